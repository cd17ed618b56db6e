"""``flowspec bench``: speed and memory figures of a spec's model (see :mod:`flowspec.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from flowspec.cli.app import SetOption, app, console, reports_errors
from flowspec.cli.bounds import MAX_BATCH, MAX_REPEATS, MAX_THREADS, load_validated, refuse_oversized


@app.command()
@reports_errors
def bench(spec: Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)],
          batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="images per step")] = 16,
          repeats: Annotated[int, typer.Option(min=1, max=MAX_REPEATS, help="timed runs per contestant (medians)")] = 5,
          threads: Annotated[int, typer.Option(min=1, max=MAX_THREADS, help="torch threads")] = 1,
          baselines: Annotated[bool, typer.Option(help="also time normflows' and FrEIA's Glow when installed")] = True,
          memory: Annotated[bool, typer.Option(help="also measure activation memory and peak RSS at K=8 and K=32")] = True,
          compiled: Annotated[bool, typer.Option("--compile", help="also time the model under torch.compile (flowspec compiled; a flow spec)")] = False,
          overrides: SetOption = None) -> None:
    """Time a training step and sampling of SPEC's model, count its FLOPs against the machine's
    measured conv peak, measure its memory with and without invertible backprop, and compare
    with other libraries' Glow of the same shape (a VAE spec: the figures that apply to a VAE)."""
    from flowspec.core.speed import keep_freed_memory
    from flowspec.family import family_of

    keep_freed_memory()  # every contestant's activations reuse freed memory (process-wide)
    torch.set_num_threads(threads)
    parsed, graph = load_validated(spec, overrides=overrides)
    refuse_oversized(graph)
    report = family_of(parsed).bench(str(spec), parsed, batch=batch, repeats=repeats, baselines=baselines,
                                     memory=memory, overrides=overrides, compile=compiled)
    for line in report.lines():
        console.print(line, markup=False, highlight=False)
