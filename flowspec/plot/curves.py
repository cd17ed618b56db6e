"""``flowspec plot RUN [RUN ...]``: training curves from each run's ``metrics.jsonl``, runs overlaid.

Three panels against the optimizer step: the loss (the smoothed training ``bpd_avg`` as a line, the
periodic test figure as dots joined by a dashed line of the same colour), in bits/dim, or nats/dim
for continuous data; the learning rate; the gradient norm before clipping (log scale)."""

from __future__ import annotations

import json
from pathlib import Path

from flowspec.errors import FlowSpecError
from flowspec.plot import new_figure


class RunCurves:
    """One run's series: ``steps`` with ``bpd_avg``, ``lr``, ``grad_norm``; ``test_steps`` with ``test``."""

    def __init__(self, folder: Path, label: str, unit: str):
        self.folder, self.label, self.unit = folder, label, unit
        self.steps, self.train, self.lr, self.grad_norm = [], [], [], []
        self.test_steps, self.test = [], []


def read_run(run: str | Path, label: str | None = None) -> RunCurves:
    """Read ``RUN/metrics.jsonl`` (``RUN`` a run folder, or a file in it such as ``last.pt``); the
    unit from the run's spec when its checkpoint is there (nats/dim for continuous data)."""
    folder = Path(run)
    if folder.is_file():
        folder = folder.parent
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise FlowSpecError(f"{folder}: no metrics.jsonl (give a run folder written by `flowspec train`)")
    curves = RunCurves(folder, label or folder.name, _unit(folder))
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            raise FlowSpecError(f"{path}:{number}: not a metrics line (a JSON object with a step)") from None
        if "test_bpd" in row:
            curves.test_steps.append(step)
            curves.test.append(float(row["test_bpd"]))
        if "bpd_avg" in row:
            curves.steps.append(step)
            curves.train.append(float(row["bpd_avg"]))
            curves.lr.append(float(row.get("lr", float("nan"))))
            curves.grad_norm.append(float(row.get("grad_norm", float("nan"))))
    if not curves.steps and not curves.test_steps:
        raise FlowSpecError(f"{path}: no steps logged yet")
    return curves


def _unit(folder: Path) -> str:
    """bits/dim, or nats/dim when the run's spec models continuous data (read from its checkpoint)."""
    from flowspec.compile.export import MODEL_FORMAT, read_checkpoint
    from flowspec.errors import CheckpointError

    for name in ("last.pt", "best.pt"):
        if (folder / name).is_file():
            try:
                spec = read_checkpoint(folder / name, MODEL_FORMAT)["spec"]
            except CheckpointError:
                continue
            return "nats/dim" if (spec.get("input") or {}).get("data") == "continuous" else "bits/dim"
    return "bits/dim"


def training_figure(runs: list[RunCurves], title: str | None = None):
    """The Figure: loss, learning rate and gradient norm against the step, one colour per run."""
    units = {run.unit for run in runs}
    if len(units) > 1:
        raise FlowSpecError("these runs mix bits/dim and nats/dim (discrete and continuous data); plot them apart")
    unit = units.pop()
    figure = new_figure(12.0, 3.6)
    loss, rate, norm = figure.subplots(1, 3)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, colour in zip(runs, colours):
        if run.steps:
            loss.plot(run.steps, run.train, color=colour, label=f"{run.label} train (smoothed)")
            rate.plot(run.steps, run.lr, color=colour, label=run.label)
            norm.plot(run.steps, run.grad_norm, color=colour, label=run.label)
        if run.test_steps:
            loss.plot(run.test_steps, run.test, color=colour, linestyle="--", marker="o", markersize=3,
                      label=f"{run.label} test")
    loss.set(xlabel="step", ylabel=unit, title=f"loss ({unit})")
    rate.set(xlabel="step", ylabel="learning rate", title="learning rate")
    norm.set(xlabel="step", ylabel="gradient norm", title="gradient norm (before clipping)", yscale="log")
    loss.legend(fontsize="small")
    if len(runs) > 1:
        rate.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return figure
