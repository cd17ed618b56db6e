"""``plot``, ``plot-density``: figures with matplotlib (the optional extra ``flowspec[plot]``; the
work lives in :mod:`flowspec.plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flowspec.cli.app import TitleOption, app, console, reports_errors
from flowspec.cli.bounds import writable_folder
from flowspec.errors import FlowSpecError


@app.command()
@reports_errors
def plot(runs: Annotated[list[Path], typer.Argument(help="run folders (or their last.pt), overlaid", show_default=False)],
         output: Annotated[Path, typer.Option("--output", "-o", help=".png, .svg or .pdf")] = Path("training.png"),
         labels: Annotated[Optional[str], typer.Option("--labels", help="legend names of the runs, comma-separated [folder names]")] = None,
         title: TitleOption = None) -> None:
    """Training curves of RUNS from their metrics.jsonl: train and test bits/dim (nats/dim for
    continuous data), learning rate and gradient norm against the step, runs overlaid."""
    from flowspec.plot import figure_path, save_figure
    from flowspec.plot.curves import read_run, training_figure

    names = [name.strip() for name in labels.split(",")] if labels is not None else [None] * len(runs)
    if len(names) != len(runs):
        raise FlowSpecError(f"--labels: {len(names)} names for {len(runs)} runs")
    writable_folder(figure_path(output).parent)
    curves = [read_run(run, name) for run, name in zip(runs, names)]
    path = save_figure(training_figure(curves, title), output)
    console.print(f"wrote the curves of {len(curves)} run(s) to {path}", markup=False)


@app.command(name="plot-density")
@reports_errors
def plot_density(checkpoint: Annotated[Path, typer.Argument(help="RUN/last.pt or best.pt of a 2-D continuous model", show_default=False)],
                 output: Annotated[Path, typer.Option("--output", "-o", help=".png, .svg or .pdf")] = Path("density.png"),
                 size: Annotated[int, typer.Option(min=16, max=1024, help="grid points per axis")] = 160,
                 points: Annotated[bool, typer.Option("--points/--no-points", help="overlay the test points")] = True,
                 context: Annotated[Optional[str], typer.Option("--context", help="context-conditional model: the context, comma-separated")] = None,
                 title: TitleOption = None) -> None:
    """Draw p(x | c) of a 2-D continuous model: one titled panel per class (class-conditional) with
    axes and a colour bar, the run's test points overlaid."""
    from flowspec.compile.export import load_model
    from flowspec.cli.conditions import requested_conditions
    from flowspec.plot import figure_path, require_matplotlib, save_figure
    from flowspec.plot.density import density_figure
    from flowspec.train.evaluate import checkpoint_data

    require_matplotlib()
    writable_folder(figure_path(output).parent)
    model = load_model(checkpoint)
    conditions = None
    if context is not None:
        c, _, _ = requested_conditions(model, 1, context=context)
        conditions = [c[0]]
    xy, labels, names = None, None, None
    if points:
        _, dataset, (_, test_conditions) = checkpoint_data(checkpoint, model, None, None)
        xy = dataset.test.numpy()
        labels = test_conditions.numpy() if test_conditions is not None and test_conditions.dim() == 1 else None
        names = list(dataset.classes) if getattr(dataset, "classes", None) else None
        if context is not None:
            labels = None
    figure = density_figure(model, xy, labels, size, conditions, names, title)
    path = save_figure(figure, output)
    console.print(f"wrote the density of {model.spec.name or 'the model'} to {path}", markup=False)
