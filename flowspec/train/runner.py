"""The training loop: train, checkpoint, resume (single process or torchrun).

Objective (a lower bound on ``log P(x)`` under dequantization, see ``docs/math.md``): minimise the
mean over a batch of ``bits/dim(x) = -(E_q[log p(y) - log q(u|x)] - D log n) / (D log 2)``, which
the model computes as ``model.bits_per_dim(x)``. The loop uses only what both model families
(``FlowModel``, ``VAEModel``) provide: ``bits_per_dim(x, k)``, ``initialize(x)``,
``sample(n, temperature, generator)``, ``to_data_space(y)`` and ``spec``. A conditional flow spec
(``condition:``) also gets each example's label or context (:mod:`.conditions`): the batch carries
them, and the model is called with them; on continuous data (``input.data: continuous``) the loss is
the exact nats/dim (:func:`.evaluate.per_dim_loss`).

The other concerns live beside it: data order and noise seeds (:mod:`.sampler`), evaluation
(:mod:`.evaluate`), sample grids (:mod:`.images`), metrics and progress (:mod:`.metrics`), NaN
diagnosis (:mod:`.diagnosis`), checkpoints (:mod:`.checkpoints`), the run folder's lock
(:mod:`.lock`) and stopping on SIGINT / SIGTERM (:mod:`.signals`).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from flowspec.data.loaders import random_flip
from flowspec.errors import CheckpointError, DataError, FlowSpecError
from flowspec.train import ddp
from flowspec.train.checkpoints import (load_checkpoint, remove_stale_temporaries, rng_state, save_checkpoint,
                                        set_rng_state)
from flowspec.train.conditions import data_levels, default_sample_conditions, split_conditions
from flowspec.train.config import TrainingConfig
from flowspec.train.device import pick_device
from flowspec.train.diagnosis import TrainingDiverged, diverged_message, find_nonfinite, first_nonfinite_gradient
from flowspec.train.ema import EMA
from flowspec.train.evaluate import Draws, evaluate, evaluate_draws, per_dim_loss
from flowspec.train.images import sample_grid, save_png, tile
from flowspec.train.lock import RunLock
from flowspec.train.metrics import MetricsLog, progress_display, smoothed
from flowspec.train.sampler import BlockSampler, seed_step
from flowspec.train.signals import StopRequests, TrainingInterrupted

#: names importable from here since the runner was one module
__all__ = ["BlockSampler", "Draws", "RunResult", "TrainingDiverged", "TrainingInterrupted", "evaluate",
           "evaluate_draws", "find_nonfinite", "pick_device", "sample_grid", "save_png", "tile", "train"]


@dataclass
class RunResult:
    out: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    test_bpd: float | None = None
    best_bpd: float | None = None


class _Objective(nn.Module):
    """Mean bits/dim as a ``forward`` so that DDP's gradient hooks see it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        return per_dim_loss(self.model, x, c)


def _same_spec(a: dict, b: dict) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in ("training", "name")}  # noqa: E731
    return strip(a) == strip(b)


def train(spec, data, config: TrainingConfig, out: str | Path, *, resume: bool = False,
          progress: bool = True, model: nn.Module | None = None, data_info: dict | None = None,
          log: Callable[[str], None] = print) -> RunResult:
    """Train ``spec`` on ``data`` (a :class:`~flowspec.data.DataSplit`) with ``config``; write
    ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``samples/`` under ``out``.

    Under ``torchrun`` every rank calls this; rank 0 alone writes files and holds the run folder's
    lock. ``model`` may be given (already compiled from ``spec``); otherwise it is compiled here.
    SIGINT / SIGTERM write ``last.pt`` at the next step boundary and raise
    :class:`TrainingInterrupted`.
    """
    out = Path(out)
    device = pick_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", ddp.environment().local_rank)
    env = ddp.setup(device)
    try:
        if resume and not (out / "last.pt").is_file():
            raise CheckpointError(f"{out / 'last.pt'}: nothing to resume (no last.pt in {out})")
        _check_inputs(spec, data, config, env)
        with StopRequests() as stop, _hold_run_folder(out, env, device, log):
            return _train(spec, data, config, out, resume, progress and env.main, model, data_info or {}, log,
                          device, env, stop)
    finally:
        ddp.teardown()


def _check_inputs(spec, data, config: TrainingConfig, env: ddp.DistEnv) -> None:
    """The data are finite and fit the spec, the batch divides over the processes (before any
    file is touched)."""
    from flowspec.data import check_fits

    if config.batch_size % env.world_size:
        raise FlowSpecError(f"batch size {config.batch_size} does not divide over {env.world_size} processes")
    check_fits(data, tuple(spec.input.shape), data_levels(spec))  # finite values first, then shape and levels


@contextlib.contextmanager
def _hold_run_folder(out: Path, env: ddp.DistEnv, device: torch.device, log: Callable[[str], None]):
    """Rank 0 takes the folder's lock and removes the temporaries of killed runs; every rank stops
    together when it cannot. A folder this run created and left holding only the lock (the run
    failed before writing anything) is removed again."""
    lock, failure, created = None, None, not out.exists()
    if env.main:
        try:
            lock = RunLock(out).acquire()
            removed = remove_stale_temporaries(out)
            if removed:
                log(f"{out}: removed {len(removed)} temporary file(s) left by a killed run "
                    f"({', '.join(p.name for p in removed[:3])}{', ...' if len(removed) > 3 else ''})")
        except FlowSpecError as error:
            failure = error
    if ddp.any_true(failure is not None, device):
        if lock is not None:
            lock.release()
        raise failure or FlowSpecError(f"run folder {out}: rank 0 could not take it")
    try:
        yield lock
    finally:
        if lock is not None:
            empty = created and [p.name for p in out.iterdir()] == [lock.path.name]
            if empty:  # unlinked while still held, so no other run can be holding that file
                lock.path.unlink(missing_ok=True)
            lock.release()
            if empty:
                with contextlib.suppress(OSError):
                    out.rmdir()


def _train(spec, data, config, out, resume, progress, model, data_info, log, device, env, stop) -> RunResult:
    from flowspec.compile import compile as compile_spec

    local_batch = config.batch_size // env.world_size
    n_train = len(data.train)
    sampler = BlockSampler(n_train, config.batch_size, num_replicas=env.world_size, rank=env.rank, seed=config.seed)
    batches_per_epoch = len(sampler) // local_batch
    if batches_per_epoch == 0:
        raise DataError(f"{n_train} training examples are fewer than one batch of {config.batch_size}")
    total = config.total_steps(batches_per_epoch)
    example_size = int(np.prod(data.train.shape[1:]))
    rank_offset = env.rank * local_batch * example_size
    # the label or context of each example, row by row (None: unconditional)
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
    start, best_bpd, running = 0, math.inf, None

    if resume:
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
            set_rng_state(checkpoint["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{last}: its weights do not fit the spec: {str(error).splitlines()[0]}") from None
        start = checkpoint["step"]
        best_bpd = float(checkpoint.get("best_bpd", math.inf))
        running = checkpoint.get("bpd_avg")
        if start >= total:
            log(f"{last}: already at step {start} of {total}; nothing to do")
    else:
        if last.is_file():
            raise FlowSpecError(f"{last} exists: pass --resume to continue that run, or choose another --out")
        first, first_c = batch(0)
        seed_step(config.seed, -1, rank_offset, device)
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
    metrics = MetricsLog(out, env.main)
    use_bf16 = config.autocast_bf16(device.type)
    result = RunResult(out=out, steps=start)
    last_saved = start if resume else None

    def checkpoint_state(step: int) -> dict:
        return {"spec": spec_data, "spec_file": spec.source.file if spec.source is not None else None,
                "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": {"kind": "warmup+" + config.lr_decay, "step": step},
                "ema_state_dict": ema.state_dict() if ema is not None else None,
                "ema_updates": ema.updates if ema is not None else 0,
                "step": step, "epoch": step // batches_per_epoch,
                "data_order": {"seed": config.seed, "world_size": env.world_size, "position": step % batches_per_epoch,
                               "batches_per_epoch": batches_per_epoch},
                "rng": rng_state(), "best_bpd": best_bpd, "bpd_avg": running,
                "config": config.model_dump(mode="json"), "data": dict(data_info, name=data.name)}

    def evaluation_model():
        return ema.applied() if ema is not None else contextlib.nullcontext(model)

    def kept() -> Path | None:
        return last if last_saved is not None else None

    stop_asked = False
    tic = time.perf_counter()
    try:
        unit = "nats/dim" if getattr(spec.input, "continuous", False) else "bits/dim"
        with progress_display(progress, total, start, log, unit) as show:
            for step in range(start, total):
                x, c = batch(step)
                if config.flip:
                    x = random_flip(x, seed=(config.seed * 1_000_003 + step) * 4096 + rank_offset)
                lr = config.lr * config.lr_factor(step, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                seed_step(config.seed, step, rank_offset, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    bpd = objective(x) if c is None else objective(x, c)
                loss = bpd.float().mean()
                mean_loss, stop_asked = ddp.step_summary(loss, stop.signum is not None)
                value = mean_loss.item()
                if not math.isfinite(value):
                    seed_step(config.seed, step, rank_offset, device)
                    where = (find_nonfinite(model, x, c)
                             or "no single layer is non-finite; the sum of the log-densities overflowed")
                    if where.startswith("the batch itself"):
                        where = f"{where}: data set {data.name!r}"
                    raise TrainingDiverged(diverged_message(step, f"the loss is {value}", where, config,
                                                            kept(), last_saved))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip = config.grad_clip if config.grad_clip is not None else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                if ddp.any_true(not bool(torch.isfinite(grad_norm)), device):
                    where = first_nonfinite_gradient(model)
                    where = (f"first non-finite gradient in {where}" if where
                             else "a non-finite gradient on another process")
                    raise TrainingDiverged(diverged_message(step, "the gradient norm is non-finite", where, config,
                                                            kept(), last_saved))
                optimizer.step()
                if ema is not None:
                    ema.update()
                result.losses.append(value)
                running = smoothed(running, value)
                done = step + 1
                result.steps = done
                if not env.distributed:  # a signal during this step's backward still counts now
                    stop_asked = stop.signum is not None
                if done % 10 == 0 or done == total:
                    metrics.log(done, loss=value, bpd=value, bpd_avg=running, lr=lr, grad_norm=float(grad_norm),
                                seconds=time.perf_counter() - tic)
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
                if show is not None:  # after the evaluation: the last line carries the final test figure
                    show(done, value, running, result.test_bpd, lr)
                if done % config.checkpoint_every == 0 or is_last or stop_asked:
                    if env.main:
                        save_checkpoint(checkpoint_state(done), last)
                    last_saved = done
                if stop_asked and not is_last:
                    ddp.barrier()
                    signum = stop.signum or signal.SIGTERM  # only another rank got it: preemption
                    raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} at step {done} of {total}; "
                                              f"wrote {last} (step {done}); continue with --resume", signum)
                if env.main and (done % config.sample_every == 0 or is_last):
                    with evaluation_model() as evaluated:
                        try:
                            save_png(sample_grid(evaluated, config.samples, config.temperature, seed=config.seed,
                                                 c=sample_conditions),
                                     out / "samples" / f"step{done:06d}.png")
                        except FlowSpecError:
                            pass  # vector data that is not a square image: no grid
    finally:
        metrics.close()
    if result.best_bpd is None and math.isfinite(best_bpd):
        result.best_bpd = best_bpd
    ddp.barrier()
    return result
