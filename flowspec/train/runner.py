"""The training loop: train, checkpoint, resume (single process or torchrun).

Objective (a lower bound on ``log P(x)`` under dequantization, see ``docs/math.md``): minimise the
mean over a batch of ``bits/dim(x) = -(E_q[log p(y) - log q(u|x)] - D log n) / (D log 2)``. The
loop uses only the model protocol (:class:`~flowspec.core.protocol.DensityModel`):
``loss_per_dim(x, condition=c)`` (bits/dim, or the exact nats/dim on continuous data),
``initialize(x, condition=c)``, ``sample(n, condition=c, temperature=, generator=)``,
``to_data_space(y)`` and ``spec``; ``c`` is each example's label or context (:mod:`.conditions`),
None for an unconditional spec, and is passed the same way either way.

:class:`TrainingLoop` holds a run's state and drives a :class:`~flowspec.train.step.TrainStep`
(loss, autocast, clipping, optimizer step, EMA). The other concerns live beside it: data order
and noise seeds (:mod:`.sampler`), evaluation (:mod:`.evaluate`), sample grids (:mod:`.images`),
metrics and progress (:mod:`.metrics`), NaN diagnosis (:mod:`.diagnosis`), checkpoints
(:mod:`.checkpoints`), the run folder's lock (:mod:`.lock`) and stopping on SIGINT / SIGTERM
(:mod:`.signals`).
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

from flowspec.data.loaders import random_flip, random_shift
from flowspec.errors import CheckpointError, DataError, FlowSpecError
from flowspec.train import ddp
from flowspec.train.checkpoints import (load_checkpoint, remove_stale_temporaries, rng_state, save_checkpoint,
                                        set_rng_state)
from flowspec.train.conditions import data_levels, default_sample_conditions, split_conditions
from flowspec.train.config import TrainingConfig
from flowspec.train.device import pick_device
from flowspec.train.diagnosis import TrainingDiverged, diverged_message, find_nonfinite
from flowspec.train.ema import EMA
from flowspec.train.evaluate import Draws, evaluate, evaluate_draws, per_dim_loss
from flowspec.train.images import sample_grid, save_png, tile
from flowspec.train.lock import RunLock
from flowspec.files import make_folder, refuse_link
from flowspec.train.metrics import MetricsLog, progress_display, smoothed
from flowspec.train.sampler import BlockSampler, seed_step
from flowspec.train.signals import StopRequests, TrainingInterrupted
from flowspec.train.step import NonFiniteGradient, NonFiniteLoss, StepResult, TrainStep, build_optimizer

#: names importable from here since the runner was one module
__all__ = ["BlockSampler", "Draws", "RunResult", "TrainingDiverged", "TrainingInterrupted", "evaluate",
           "evaluate_draws", "find_nonfinite", "pick_device", "sample_grid", "save_png", "tile", "train"]

RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "samples", "tensorboard")  # what a run writes in its folder


@dataclass
class RunResult:
    out: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    test_bpd: float | None = None
    best_bpd: float | None = None
    #: what the losses and test figures measure (the model's ``unit``)
    unit: str = "bits/dim"


class _Objective(nn.Module):
    """The per-example loss (``loss_per_dim``, in the model's ``unit``) as a ``forward``, so that
    DDP's gradient hooks see it."""

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
            loop = TrainingLoop(spec, data, config, out, env=env, device=device, model=model, data_info=data_info,
                                log=log)
            loop.start(resume)
            return loop.run(stop, progress and env.main)
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
            for name in RUN_FILES:  # refused now, not at the first checkpoint after minutes of training
                refuse_link(out / name)
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


class Batches:
    """The examples (and their conditions) of each step on this process, in the
    :class:`BlockSampler`'s order: the same on resume, disjoint across ranks."""

    def __init__(self, data, conditions: Tensor | None, config: TrainingConfig, env: ddp.DistEnv,
                 device: torch.device):
        self.data, self.conditions, self.device = data, conditions, device
        self.local = config.batch_size // env.world_size
        self.sampler = BlockSampler(len(data.train), config.batch_size, num_replicas=env.world_size, rank=env.rank,
                                    seed=config.seed)
        self.per_epoch = len(self.sampler) // self.local
        if self.per_epoch == 0:
            raise DataError(f"{len(data.train)} training examples are fewer than one batch of {config.batch_size}")
        #: where this rank's noise streams start (:func:`seed_step`)
        self.rank_offset = env.rank * self.local * int(np.prod(data.train.shape[1:]))
        self._order: dict[int, list[int]] = {}

    def __call__(self, step: int) -> tuple[Tensor, Tensor | None]:
        epoch, position = divmod(step, self.per_epoch)
        if epoch not in self._order:
            self._order.clear()
            self.sampler.set_epoch(epoch)
            self._order[epoch] = list(iter(self.sampler))
        indices = self._order[epoch][position * self.local:(position + 1) * self.local]
        c = None if self.conditions is None else self.conditions[indices].to(self.device, non_blocking=True)
        return self.data.train[indices].to(self.device, non_blocking=True), c

    def first(self, count: int) -> tuple[Tensor, Tensor | None]:
        """This rank's share of the first ``count`` examples of the first epoch's order."""
        self.sampler.set_epoch(0)
        indices = list(iter(self.sampler))[:max(1, count // self.sampler.num_replicas)]
        self._order.clear()
        c = None if self.conditions is None else self.conditions[indices].to(self.device)
        return self.data.train[indices].to(self.device), c


class TrainingLoop:
    """A run: its data order, model, :class:`~flowspec.train.step.TrainStep`, EMA and the state a
    checkpoint holds; :meth:`start` initialises or resumes it, :meth:`run` drives the steps, then
    evaluates, checkpoints and draws samples on schedule."""

    def __init__(self, spec, data, config: TrainingConfig, out: Path, *, env: ddp.DistEnv, device: torch.device,
                 model: nn.Module | None = None, data_info: dict | None = None,
                 log: Callable[[str], None] = print):
        from flowspec.compile import compile as compile_spec

        self.spec, self.data, self.config, self.out, self.env, self.device = spec, data, config, out, env, device
        self.data_info, self.log = data_info or {}, log
        train_conditions, self.test_conditions = split_conditions(spec, data)
        self.batches = Batches(data, train_conditions, config, env, device)
        self.total = config.total_steps(self.batches.per_epoch)
        self.sample_conditions = default_sample_conditions(spec, config.samples, self.test_conditions)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % (2 ** 32))
        random.seed(config.seed)
        self.model = (model if model is not None else compile_spec(spec)).to(device)
        self.spec_data = spec.model_dump(mode="json")
        self.last, self.best_path = out / "last.pt", out / "best.pt"
        self.optimizer = build_optimizer(self.model, config, self.batches.per_epoch)
        ema_decay = config.polyak_decay(self.batches.per_epoch)
        self.ema = EMA(self.model, ema_decay) if ema_decay is not None else None
        self.start_step, self.best_bpd, self.running = 0, math.inf, None
        self.last_saved: int | None = None

    # -- before the first step ------------------------------------------------------------------
    def start(self, resume: bool) -> None:
        """Resume from ``last.pt``, or initialise (actnorm's data-dependent init on the first
        batch as it is, or on ``init_batch`` examples augmented as training batches are, as Glow
        initialises on its augmented train iterator; all-reduced across ranks); then build the step
        (DDP-wrapped when distributed)."""
        if resume:
            self._resume()
        else:
            if self.last.is_file():
                raise FlowSpecError(f"{self.last} exists: pass --resume to continue that run, or choose another --out")
            if self.config.init_batch is None:
                first, first_c = self.batches(0)
            else:
                first, first_c = self.batches.first(self.config.init_batch)
                first = self._augmented(first, -1)
            seed_step(self.config.seed, -1, self.batches.rank_offset, self.device)
            self.model.initialize(first, condition=first_c)
            if self.ema is not None:
                self.ema.reset()
        if self.env.main:
            make_folder(self.out)
            if getattr(self.model, "noise", 0):
                self.log(f"noise augmentation: the training loss is on inputs plus N(0, {self.model.noise:g}^2) noise; "
                         f"the test figures score the clean test data under this noisy model")
        if self.config.compile:  # after the data-dependent init, which runs eagerly
            from flowspec.core.speed import compile_model

            compile_model(self.model)
        objective = _Objective(self.model)
        if self.env.distributed:
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step = TrainStep(self.model, objective, self.optimizer, ema=self.ema, grad_clip=self.config.grad_clip,
                              bf16=self.config.autocast_bf16(self.device.type), device=self.device)

    def _resume(self) -> None:
        checkpoint = load_checkpoint(self.last)
        if not _same_spec(checkpoint["spec"], self.spec_data):
            raise CheckpointError(f"{self.last}: was trained from a different spec (layers, input or prior differ)")
        try:
            self.model.load_state_dict(checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.ema is not None and checkpoint.get("ema_state_dict") is not None:
                self.ema.load_state_dict(checkpoint["ema_state_dict"], int(checkpoint.get("ema_updates", 0)))
            elif self.ema is not None:
                self.ema.reset()
            set_rng_state(checkpoint["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{self.last}: its weights do not fit the spec: "
                                  f"{str(error).splitlines()[0]}") from None
        self.start_step = checkpoint["step"]
        self.best_bpd = float(checkpoint.get("best_bpd", math.inf))
        self.running = checkpoint.get("bpd_avg")
        self.last_saved = self.start_step
        if self.start_step >= self.total:
            self.log(f"{self.last}: already at step {self.start_step} of {self.total}; nothing to do")

    def checkpoint_state(self, step: int) -> dict:
        config, per_epoch, ema = self.config, self.batches.per_epoch, self.ema
        return {"spec": self.spec_data, "spec_file": self.spec.source.file if self.spec.source is not None else None,
                "state_dict": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": {"kind": "warmup+" + config.lr_decay, "step": step},
                "ema_state_dict": ema.state_dict() if ema is not None else None,
                "ema_updates": ema.updates if ema is not None else 0,
                "step": step, "epoch": step // per_epoch,
                "data_order": {"seed": config.seed, "world_size": self.env.world_size, "position": step % per_epoch,
                               "batches_per_epoch": per_epoch},
                "rng": rng_state(), "best_bpd": self.best_bpd, "bpd_avg": self.running,
                "config": config.model_dump(mode="json"), "data": dict(self.data_info, name=self.data.name)}

    # -- the steps --------------------------------------------------------------------------------
    def run(self, stop: StopRequests, progress: bool) -> RunResult:
        """Steps ``start .. total``; after each, the schedule's metrics, evaluation, checkpoint and
        samples. A signal writes ``last.pt`` at the step boundary and raises :class:`TrainingInterrupted`."""
        self.result = RunResult(out=self.out, steps=self.start_step, unit=getattr(self.model, "unit", "bits/dim"))
        self.metrics = MetricsLog(self.out, self.env.main)
        self.tic = time.perf_counter()
        try:
            with progress_display(progress, self.total, self.start_step, self.log, self.result.unit) as show:
                for step in range(self.start_step, self.total):
                    lr, outcome, stop_asked = self._train_step(step, stop)
                    self._record(step + 1, lr, outcome)
                    self._on_schedule(step + 1, stop, stop_asked)
                    if show is not None:  # after the evaluation: the last line carries the final test figure
                        show(step + 1, outcome.value, self.running, self.result.test_bpd, lr)
        finally:
            self.metrics.close()
        if self.result.best_bpd is None and math.isfinite(self.best_bpd):
            self.result.best_bpd = self.best_bpd
        ddp.barrier()
        return self.result

    def _train_step(self, step: int, stop: StopRequests) -> tuple[float, StepResult, bool]:
        config, offset = self.config, self.batches.rank_offset
        x, c = self.batches(step)
        x = self._augmented(x, step)
        lr = config.lr * config.lr_factor(step, self.total)
        self.step.set_lr(lr)
        seed_step(config.seed, step, offset, self.device)
        try:
            outcome = self.step(x, c, stop.signum is not None)
        except NonFiniteLoss as error:
            seed_step(config.seed, step, offset, self.device)  # the same noise as the step that failed
            where = (find_nonfinite(self.model, x, c)
                     or "no single layer is non-finite; the sum of the log-densities overflowed")
            if where.startswith("the batch itself"):
                where = f"{where}: data set {self.data.name!r}"
            raise self._diverged(step, str(error), where) from None
        except NonFiniteGradient as error:
            where = (f"first non-finite gradient in {error.where}" if error.where
                     else "a non-finite gradient on another process")
            raise self._diverged(step, str(error), where) from None
        stop_asked = outcome.stop_asked
        if not self.env.distributed:  # a signal during this step's backward still counts now
            stop_asked = stop.signum is not None
        return lr, outcome, stop_asked

    def _augmented(self, x: Tensor, step: int) -> Tensor:
        """``training.shift`` then ``training.flip``, seeded by seed, step and rank (step -1: the init batch)."""
        config = self.config
        seed = (config.seed * 1_000_003 + step) * 4096 + self.batches.rank_offset
        if config.shift:
            x = random_shift(x, config.shift, seed=seed + 1)
        if config.flip:
            x = random_flip(x, seed=seed)
        return x

    def _diverged(self, step: int, what: str, where: str) -> TrainingDiverged:
        kept = self.last if self.last_saved is not None else None
        return TrainingDiverged(diverged_message(step, what, where, self.config, kept, self.last_saved))

    def _record(self, done: int, lr: float, outcome: StepResult) -> None:
        value = outcome.value
        self.result.losses.append(value)
        self.running = smoothed(self.running, value)
        self.result.steps = done
        if done % 10 == 0 or done == self.total:
            self.metrics.log(done, loss=value, bpd=value, bpd_avg=self.running, lr=lr,
                             grad_norm=float(outcome.grad_norm), seconds=time.perf_counter() - self.tic)

    def _on_schedule(self, done: int, stop: StopRequests, stop_asked: bool) -> None:
        config, is_last = self.config, done == self.total
        if self.env.main and (done % config.eval_every == 0 or is_last):
            self._evaluate(done, is_last)
        if done % config.checkpoint_every == 0 or is_last or stop_asked:
            if self.env.main:
                save_checkpoint(self.checkpoint_state(done), self.last)
            self.last_saved = done
        if stop_asked and not is_last:
            ddp.barrier()
            signum = stop.signum or signal.SIGTERM  # only another rank got it: preemption
            raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} at step {done} of {self.total}; "
                                      f"wrote {self.last} (step {done}); continue with --resume", signum)
        if self.env.main and (done % config.sample_every == 0 or is_last):
            self._draw_samples(done)

    def _evaluation_model(self):
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext(self.model)

    def _evaluate(self, done: int, is_last: bool) -> None:
        """Test figure (the whole test split at the end, ``eval_batches`` before); a new best
        writes ``best.pt``."""
        with self._evaluation_model() as evaluated:
            test = evaluate(evaluated, self.data.test, batch_size=256, seed=self.config.seed,
                            max_batches=None if is_last else self.config.eval_batches,
                            conditions=self.test_conditions)
        self.result.test_bpd = test
        self.metrics.log(done, test_bpd=test)
        if test < self.best_bpd:
            self.best_bpd = test
            self.result.best_bpd = test
            save_checkpoint(self.checkpoint_state(done), self.best_path)

    def _draw_samples(self, done: int) -> None:
        with self._evaluation_model() as evaluated:
            try:
                grid = sample_grid(evaluated, self.config.samples, self.config.temperature, seed=self.config.seed,
                                   c=self.sample_conditions)
            except FlowSpecError:
                grid = None  # vector data that is not a square image: no grid
        if grid is not None:
            save_png(grid, self.out / "samples" / f"step{done:06d}.png")
