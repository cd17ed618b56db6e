"""What a run reports while it trains: ``metrics.jsonl`` (one JSON object per line, and TensorBoard
scalars when tensorboard is installed), the smoothed loss ``bpd_avg`` and the progress display: a
rich bar on a terminal, plain periodic lines in a pipe or a log file (:class:`PlainProgress`).

``bpd_avg`` is an exponential moving average of the (all-reduced) batch loss,
``a_t = 0.98 a_{t-1} + 0.02 l_t`` with ``a_1 = l_1``; it is stored in each checkpoint so that a
resumed run continues the same curve.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

from flowspec.files import make_folder, open_for_writing

SMOOTHING = 0.98


class MetricsLog:
    """JSON lines in ``metrics.jsonl`` (and TensorBoard scalars when tensorboard is installed);
    a no-op on ranks other than 0."""

    def __init__(self, out: Path, enabled: bool):
        self.enabled = enabled
        self.stream = open_for_writing(out / "metrics.jsonl", "a") if enabled else None
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(make_folder(out / "tensorboard")))
            except ImportError:  # tensorboard not installed: JSON lines only
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


def smoothed(previous: float | None, value: float) -> float:
    """One step of ``bpd_avg``: ``0.98 previous + 0.02 value`` (``value`` itself at the start)."""
    return value if previous is None else SMOOTHING * previous + (1 - SMOOTHING) * value


def progress_bar(enabled: bool):
    """A rich progress bar as a context manager (``None`` inside when disabled)."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("train", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.description}", markup=False),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


def clock_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``: minutes and seconds, hours when there are any."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class PlainProgress:
    """Progress for a pipe or a log file: one whole line about ``lines`` times a run (and at its
    last step), never a redrawn bar that a file truncates::

        step 200/2000 (10%)  loss 2.531  bits/dim 2.609  test 2.412  lr 1.9e-03  26.1 steps/s  ETA 1:09

    ``loss`` is the step's batch loss and the next figure its moving average ``bpd_avg``; the rate is
    this process's steps over its wall time, and ETA = (steps left) / rate."""

    def __init__(self, total: int, start: int, log: Callable[[str], None], unit: str = "bits/dim",
                 lines: int = 20, clock: Callable[[], float] = time.perf_counter):
        self.total, self.start, self.log, self.unit, self.clock = total, start, log, unit, clock
        self.every = max(1, math.ceil((total - start) / max(1, lines)))
        self.tic = clock()

    def __call__(self, done: int, loss: float, average: float, test: float | None, lr: float) -> None:
        if (done - self.start) % self.every and done != self.total:
            return
        elapsed = self.clock() - self.tic
        rate = (done - self.start) / elapsed if elapsed > 0 else math.inf
        eta = (self.total - done) / rate if rate > 0 else math.inf
        test_text = f"  test {test:.3f}" if test is not None else ""
        width = len(str(self.total))
        self.log(f"step {done:>{width}}/{self.total} ({100 * done // self.total:3d}%)  loss {loss:.3f}  "
                 f"{self.unit} {average:.3f}{test_text}  lr {lr:.1e}  {rate:.1f} steps/s  "
                 f"ETA {clock_text(eta) if math.isfinite(eta) else '?'}")


@contextlib.contextmanager
def progress_display(enabled: bool, total: int, start: int, log: Callable[[str], None], unit: str = "bits/dim",
                     interactive: bool | None = None):
    """A callable ``show(done, loss, average, test, lr)`` (or ``None`` when disabled): a rich bar
    when stdout is a terminal (``interactive``), :class:`PlainProgress` lines through ``log`` when
    it is a pipe or a file."""
    if not enabled:
        yield None
        return
    if interactive is None:
        interactive = sys.stdout.isatty()
    if not interactive:
        yield PlainProgress(total, start, log, unit)
        return
    with progress_bar(True) as bar:
        task = bar.add_task("", total=total, completed=start)

        def show(done: int, loss: float, average: float, test: float | None, lr: float) -> None:
            test_text = f" test {test:.3f}" if test is not None else ""
            bar.update(task, completed=done, description=f"loss {loss:.3f} {unit} {average:.3f}{test_text} lr {lr:.1e}")

        yield show
