"""The training runner: train, evaluate, sample, checkpoint, resume (single process or torchrun).

Objective (a lower bound on ``log P(x)`` under dequantization, see ``docs/math.md``): minimise the
mean over a batch of ``bits/dim(x) = -(E_q[log p(y) - log q(u|x)] - D log n) / (D log 2)``, which
the model computes as ``model.bits_per_dim(x)``.

Determinism. Each step reseeds torch's generator from ``(seed, step)``, and the data order is a
seeded permutation per epoch (``DistributedSampler``), so a run resumed from a checkpoint takes
exactly the batches and dequantization noise of an uninterrupted run. Under DDP on the CPU each rank
skips the noise of the ranks before it, so a W-process run draws the noise of the single-process
run on the same global batch.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from flowspec.errors import CheckpointError, DataError, FlowSpecError
from flowspec.train import ddp
from flowspec.train.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from flowspec.train.config import TrainingConfig
from flowspec.train.ema import EMA


class TrainingDiverged(FlowSpecError):
    """The loss or the gradients became NaN/Inf; the message names where and what to change."""


@dataclass
class RunResult:
    out: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    test_bpd: float | None = None
    best_bpd: float | None = None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FlowSpecError("device cuda asked for, but torch sees no GPU (use --device cpu or auto)")
    return torch.device(name)


class _Objective(nn.Module):
    """Mean bits/dim as a ``forward`` so that DDP's gradient hooks see it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return _bpd_with_k(self.model, x, None, c)


class BlockSampler(DistributedSampler):
    """The data order of one rank: each epoch a permutation seeded by ``seed + epoch`` (as
    ``DistributedSampler``), cut into global batches of ``batch_size``; rank ``r`` takes the
    ``r``-th contiguous block of ``batch_size / W`` of each, so the W ranks together see exactly the
    single-process batch, in the same order (the incomplete last batch is dropped)."""

    def __init__(self, n: int, batch_size: int, num_replicas: int, rank: int, seed: int):
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.global_batch = batch_size
        self.local_batch = batch_size // num_replicas

    def __len__(self) -> int:
        return (len(self.dataset) // self.global_batch) * self.local_batch

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        indices: list[int] = []
        for start in range(0, len(order) - self.global_batch + 1, self.global_batch):
            first = start + self.rank * self.local_batch
            indices.extend(order[first:first + self.local_batch])
        return iter(indices)


def _seed_step(seed: int, step: int, rank_offset: int, device: torch.device) -> None:
    """Reseed torch for ``step``; on the CPU skip ``rank_offset`` uniforms (the noise of the ranks
    before this one), so W ranks draw the single-process noise of the global batch."""
    torch.manual_seed((seed * 1_000_003 + step + 7) % (2 ** 63))
    if rank_offset and device.type == "cpu":
        torch.rand(rank_offset)
    elif rank_offset:
        torch.cuda.manual_seed((seed * 1_000_003 + step + 7) * 8191 + rank_offset)


def _bpd_with_k(model: nn.Module, x: Tensor, k: int | None, c: Tensor | None = None) -> Tensor:
    """Per example: bits/dim (nats/dim for continuous data, the model's ``unit``), given the
    conditions ``c`` of a conditional model; importance-weighted with ``k`` where supported."""
    if hasattr(model, "loss_per_dim"):  # flows: conditions and continuous data
        if k and k > 1 and not model.continuous:
            return model.bits_per_dim(x, c, k=k)
        return model.loss_per_dim(x, c)
    if k and k > 1 and "k" in inspect.signature(model.bits_per_dim).parameters:
        return model.bits_per_dim(x, k=k)
    return model.bits_per_dim(x)


def supports_iw(model: nn.Module) -> bool:
    return "k" in inspect.signature(model.bits_per_dim).parameters


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, batch_size: int = 256, k: int | None = None,
             max_batches: int | None = None, seed: int = 0, device: torch.device | None = None,
             conditions: Tensor | None = None) -> float:
    """Mean test bits/dim of ``model`` over ``data`` (importance-weighted with ``k`` samples where the
    model's ``bits_per_dim`` takes ``k``; nats/dim for continuous data), given the ``conditions`` of
    the examples row by row for a conditional model. Deterministic in ``seed``; leaves torch's RNG
    as it was."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for index, start in enumerate(range(0, len(data), batch_size)):
            if max_batches is not None and index >= max_batches:
                break
            x = data[start:start + batch_size].to(device)
            c = None if conditions is None else conditions[start:start + batch_size].to(device)
            total += _bpd_with_k(model, x, k, c).double().sum().item()
            count += len(x)
    model.train(was_training)
    return total / max(count, 1)


@dataclass(frozen=True)
class Draws:
    """Test bits/dim of one model under independent noise draws (dequantization noise, or the
    posterior samples of a VAE): ``values[i]`` is :func:`evaluate` with seed ``seed + i``."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over the draws (0 for a single draw)."""
        n = len(self.values)
        return statistics.stdev(self.values) / math.sqrt(n) if n > 1 else 0.0


def evaluate_draws(model: nn.Module, data: Tensor, draws: int, batch_size: int = 256, k: int | None = None,
                   seed: int = 0) -> Draws:
    """:func:`evaluate` ``draws`` times with seeds ``seed .. seed + draws - 1``. The mean of the
    one-draw figures is the test bound ``-E_q[log p(x, u) - log q(u|x)] / (D log 2)`` estimated
    with ``draws`` noise samples per example; with ``k`` each value is the importance-weighted bound."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    return Draws(tuple(evaluate(model, data, batch_size=batch_size, k=k, seed=seed + i) for i in range(draws)))


def sample_grid(model: nn.Module, n: int, temperature: float, seed: int = 0, c: Tensor | None = None,
                columns: int | None = None) -> np.ndarray:
    """``n`` samples at ``temperature`` (drawn given the conditions ``c`` of a conditional model) as
    one uint8 image grid ``(H', W')`` or ``(H', W', 3)`` of ``columns`` columns (default: square)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if c is not None:
            y = model.sample(n, temperature, generator=generator, c=c)
        else:
            try:
                y = model.sample(n, temperature, generator=generator)
            except TypeError:
                y = model.sample(n, temperature)
        v = model.to_data_space(y).float().cpu() if hasattr(model, "to_data_space") else y.float().cpu()
    model.train(was_training)
    levels = model.spec.input.levels
    images = _as_images(v, tuple(model.spec.input.shape))
    images = (images.clamp(0, levels - 1) * (255.0 / (levels - 1))).round().to(torch.uint8).numpy()
    return tile(images, columns=columns)


def _as_images(v: Tensor, shape: tuple[int, ...]) -> Tensor:
    if len(shape) == 3 and shape[0] in (1, 3):
        return v.reshape(-1, *shape)
    side = math.isqrt(int(np.prod(shape)))
    if len(shape) == 1 and side * side == shape[0]:
        return v.reshape(-1, 1, side, side)
    raise FlowSpecError(f"samples of shape {list(shape)} cannot be drawn as images "
                        f"(need [1|3, H, W] or a square vector); write them as .npy instead")


def tile(images: np.ndarray, pad: int = 1, columns: int | None = None) -> np.ndarray:
    """``(N, C, H, W)`` uint8 -> a grid of ``columns`` (default ``ceil(sqrt(N))``) columns, each
    image upscaled to >= 32 px."""
    n, c, h, w = images.shape
    scale = max(1, 32 // max(h, w))
    images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def find_nonfinite(model: nn.Module, x: Tensor, c: Tensor | None = None) -> str | None:
    """Re-run the forward pass on ``x`` with hooks and name the first layer whose output or log-det
    is NaN/Inf (``None`` when every layer is finite)."""
    names = getattr(model, "names", None)
    layers = getattr(model, "layers", None)
    if names is None or layers is None:
        return None
    found: list[str] = []

    def hook_for(index: int, name: str):
        def hook(module, inputs, output):
            if found:
                return
            tensors = output if isinstance(output, (tuple, list)) else (output,)
            for position, tensor in enumerate(tensors):
                if isinstance(tensor, Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    what = "log-det" if position == 1 else "output"
                    found.append(f"layer {name!r} (layers[{index}], {type(module).__name__}) gives a non-finite {what}")
                    return
            for tensor in inputs:
                if isinstance(tensor, Tensor) and not torch.isfinite(tensor).all():
                    found.append(f"the input of layer {name!r} (layers[{index}]) is already non-finite")
                    return
        return hook

    handles = [layer.register_forward_hook(hook_for(i, name)) for i, (name, layer) in enumerate(zip(names, layers))]
    try:
        with torch.no_grad():
            _bpd_with_k(model, x, None, c)
    except Exception as error:  # a layer may raise on non-finite input; report what we know
        found.append(f"the forward pass raised {type(error).__name__}: {error}")
    finally:
        for handle in handles:
            handle.remove()
    for name, parameter in model.named_parameters():
        if not found and not torch.isfinite(parameter).all():
            found.append(f"parameter {name!r} is non-finite")
    return found[0] if found else None


def _layer_of_parameter(model: nn.Module, parameter_name: str) -> str:
    parts = parameter_name.split(".")
    names = getattr(model, "names", None)
    if names and len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
        return f"layer {names[int(parts[1])]!r} ({parameter_name})"
    return f"parameter {parameter_name!r}"


class _Metrics:
    """JSON lines in ``metrics.jsonl`` (and TensorBoard scalars when tensorboard is installed)."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.stream = open(out / "metrics.jsonl", "a") if enabled else None
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard not installed: JSON lines only
                self.writer = None

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        self.stream.write(json.dumps({"step": step, **values}) + "\n")
        self.stream.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.stream:
            self.stream.close()
        if self.writer is not None:
            self.writer.close()


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


def _same_spec(a: dict, b: dict) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in ("training", "name")}  # noqa: E731
    return strip(a) == strip(b)


def train(spec, data, config: TrainingConfig, out: str | Path, *, resume: bool = False,
          progress: bool = True, model: nn.Module | None = None, data_info: dict | None = None,
          log: Callable[[str], None] = print) -> RunResult:
    """Train ``spec`` on ``data`` (a :class:`~flowspec.data.DataSplit`) with ``config``; write
    ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``samples/`` under ``out``.

    Under ``torchrun`` every rank calls this; rank 0 alone writes files. ``model`` may be given
    (already compiled from ``spec``); otherwise it is compiled here.
    """
    from flowspec.compile import compile as compile_spec

    out = Path(out)
    device = pick_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", ddp.environment().local_rank)
    env = ddp.setup(device)
    try:
        return _train(spec, data, config, out, resume, progress and env.main, model, data_info or {}, log,
                      device, env, compile_spec)
    finally:
        ddp.teardown()


def _train(spec, data, config, out, resume, progress, model, data_info, log, device, env, compile_spec) -> RunResult:
    if config.batch_size % env.world_size:
        raise FlowSpecError(f"batch size {config.batch_size} does not divide over {env.world_size} processes")
    local_batch = config.batch_size // env.world_size
    n_train = len(data.train)
    sampler = BlockSampler(n_train, config.batch_size, num_replicas=env.world_size, rank=env.rank, seed=config.seed)
    batches_per_epoch = len(sampler) // local_batch
    if batches_per_epoch == 0:
        raise DataError(f"{n_train} training examples are fewer than one batch of {config.batch_size}")
    total = config.total_steps(batches_per_epoch)
    example_size = int(np.prod(data.train.shape[1:]))
    # -- conditions: the label or context of each example, row by row (None: unconditional) --
    from flowspec.train.conditions import default_sample_conditions, split_conditions

    train_conditions, test_conditions = split_conditions(spec, data)
    sample_conditions = default_sample_conditions(spec, config.samples, test_conditions)

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % (2 ** 32))
    random.seed(config.seed)
    if model is None:
        model = compile_spec(spec)
    model = model.to(device)
    spec_data = spec.model_dump(mode="json")
    last, best_path = out / "last.pt", out / "best.pt"

    order_cache: dict[int, list[int]] = {}

    def batch(step: int) -> tuple[Tensor, Tensor | None]:
        """The examples of ``step`` and their conditions."""
        epoch, position = divmod(step, batches_per_epoch)
        if epoch not in order_cache:
            order_cache.clear()
            sampler.set_epoch(epoch)
            order_cache[epoch] = list(iter(sampler))
        indices = order_cache[epoch][position * local_batch:(position + 1) * local_batch]
        c = None if train_conditions is None else train_conditions[indices].to(device, non_blocking=True)
        return data.train[indices].to(device, non_blocking=True), c

    decay_params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamax":
        optimizer = torch.optim.Adamax(decay_params, lr=config.lr, weight_decay=config.weight_decay)
    else:  # the fused kernel: one pass over all parameters, measured 2x faster than foreach here
        optimizer = torch.optim.Adam(decay_params, lr=config.lr, weight_decay=config.weight_decay,
                                     fused=True)
    ema = EMA(model, config.ema) if config.ema is not None else None
    start, best_bpd, metrics_state = 0, math.inf, None

    if resume:
        if not last.is_file():
            raise CheckpointError(f"{last}: nothing to resume (no last.pt in {out})")
        checkpoint = load_checkpoint(last)
        if not _same_spec(checkpoint["spec"], spec_data):
            raise CheckpointError(f"{last}: was trained from a different spec (layers, input or prior differ)")
        try:
            model.load_state_dict(checkpoint["state_dict"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if ema is not None and checkpoint.get("ema_state_dict") is not None:
                ema.load_state_dict(checkpoint["ema_state_dict"], int(checkpoint.get("ema_updates", 0)))
            elif ema is not None:
                ema.reset()
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{last}: its weights do not fit the spec: {str(error).splitlines()[0]}") from None
        start = int(checkpoint["step"])
        best_bpd = float(checkpoint.get("best_bpd", math.inf))
        set_rng_state(checkpoint["rng"])
        if start >= total:
            log(f"{last}: already at step {start} of {total}; nothing to do")
    else:
        if last.is_file():
            raise FlowSpecError(f"{last} exists: pass --resume to continue that run, or choose another --out")
        first, first_c = batch(0)
        _seed_step(config.seed, -1, env.rank * local_batch * example_size, device)
        # actnorm's data-dependent init; all-reduced across ranks under DDP
        model.initialize(first) if first_c is None else model.initialize(first, first_c)
        if ema is not None:
            ema.reset()

    if env.main:
        out.mkdir(parents=True, exist_ok=True)
    objective = _Objective(model)
    if env.distributed:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)
    metrics = _Metrics(out, env.main)
    use_bf16 = config.autocast_bf16(device.type)
    result = RunResult(out=out, steps=start)
    last_saved = start if resume else None

    def checkpoint_state(step: int) -> dict:
        return {"spec": spec_data, "spec_file": getattr(getattr(spec, "source", None), "file", None),
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": {"kind": "warmup+" + config.lr_decay, "step": step},
                "ema_state_dict": ema.state_dict() if ema is not None else None,
                "ema_updates": ema.updates if ema is not None else 0,
                "step": step, "epoch": step // batches_per_epoch,
                "data_order": {"seed": config.seed, "world_size": env.world_size, "position": step % batches_per_epoch,
                               "batches_per_epoch": batches_per_epoch},
                "rng": rng_state(), "best_bpd": best_bpd, "config": config.model_dump(mode="json"),
                "data": dict(data_info, name=data.name)}

    def evaluation_model():
        return ema.applied() if ema is not None else contextlib.nullcontext(model)

    running = None
    tic = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task("", total=total, completed=start) if bar is not None else None
        for step in range(start, total):
            x, c = batch(step)
            lr = config.lr * config.lr_factor(step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            _seed_step(config.seed, step, env.rank * local_batch * example_size, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                bpd = objective(x) if c is None else objective(x, c)
            loss = bpd.float().mean()
            bad_loss = ddp.any_true(not bool(torch.isfinite(loss)), device)
            if bad_loss:
                _seed_step(config.seed, step, env.rank * local_batch * example_size, device)
                where = find_nonfinite(model, x, c) or "no single layer is non-finite; the sum of the log-densities overflowed"
                raise TrainingDiverged(_diverged_message(step, f"the loss is {loss.item()}", where, config,
                                                         last if last_saved is not None else None, last_saved))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip = config.grad_clip if config.grad_clip is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            if ddp.any_true(not bool(torch.isfinite(grad_norm)), device):
                names = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
                where = (f"first non-finite gradient in {_layer_of_parameter(model, names[0])}" if names
                         else "a non-finite gradient on another process")
                raise TrainingDiverged(_diverged_message(step, "the gradient norm is non-finite", where, config,
                                                         last if last_saved is not None else None, last_saved))
            optimizer.step()
            if ema is not None:
                ema.update()
            value = loss.item()
            result.losses.append(value)
            running = value if running is None else 0.98 * running + 0.02 * value
            done = step + 1
            result.steps = done
            if done % 10 == 0 or done == total:
                metrics.log(done, loss=value, bpd=value, bpd_avg=running, lr=lr, grad_norm=float(grad_norm),
                            seconds=time.perf_counter() - tic)
            if bar is not None:
                test_text = f" test {result.test_bpd:.3f}" if result.test_bpd is not None else ""
                bar.update(task, completed=done,
                           description=f"loss {value:.3f} bits/dim {running:.3f}{test_text} lr {lr:.1e}")
            is_last = done == total
            if env.main and (done % config.eval_every == 0 or is_last):
                with evaluation_model() as evaluated:
                    test = evaluate(evaluated, data.test, batch_size=256, seed=config.seed,
                                    max_batches=None if is_last else config.eval_batches,
                                    conditions=test_conditions)
                result.test_bpd = test
                metrics.log(done, test_bpd=test)
                if test < best_bpd:
                    best_bpd = test
                    result.best_bpd = test
                    save_checkpoint(checkpoint_state(done), best_path)
            if env.main and (done % config.checkpoint_every == 0 or is_last):
                save_checkpoint(checkpoint_state(done), last)
                last_saved = done
            if env.main and (done % config.sample_every == 0 or is_last):
                with evaluation_model() as evaluated:
                    try:
                        save_png(sample_grid(evaluated, config.samples, config.temperature, seed=config.seed,
                                             c=sample_conditions),
                                 out / "samples" / f"step{done:06d}.png")
                    except FlowSpecError:
                        pass  # vector data that is not a square image: no grid
            if env.distributed and (done % config.checkpoint_every == 0 or is_last):
                last_saved = done
    metrics.close()
    if result.best_bpd is None and math.isfinite(best_bpd):
        result.best_bpd = best_bpd
    ddp.barrier()
    return result


def _diverged_message(step: int, what: str, where: str, config: TrainingConfig, last: Path | None,
                      saved: int | None) -> str:
    kept = (f"kept the last good checkpoint {last} (step {saved})" if last is not None
            else "no checkpoint was written yet")
    return (f"training diverged at step {step + 1}: {what}; {where}; {kept}; "
            f"try a lower --lr (now {config.lr:g}), a longer warm-up (now {config.warmup}), gradient clipping "
            f"(--grad-clip, now {config.grad_clip}), or a bounded coupling scale (scale: sigmoid, or a clamp)")
