"""What a run reports while it trains: ``metrics.jsonl`` (one JSON object per line, and TensorBoard
scalars when tensorboard is installed), the smoothed loss ``bpd_avg`` and the progress bar.

``bpd_avg`` is an exponential moving average of the (all-reduced) batch loss,
``a_t = 0.98 a_{t-1} + 0.02 l_t`` with ``a_1 = l_1``; it is stored in each checkpoint so that a
resumed run continues the same curve.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

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
