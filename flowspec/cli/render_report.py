"""``render`` (Graphviz diagram) and ``report`` (params, FLOPs, memory, roofline) of a spec."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from flowspec.cli.app import app, console, reports_errors
from flowspec.cli.bounds import load_validated
from flowspec.render import render as render_diagram
from flowspec.report import grouped, report_spec, summary_lines, to_json, to_markdown, to_table

SpecPath = Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)]


class Detail(str, Enum):
    layer = "layer"
    step = "step"
    level = "level"


class Format(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command()
@reports_errors
def render(spec: SpecPath,
           out: Annotated[Path, typer.Option("--out", "-o", help="output file: .svg, .png, .pdf or .dot")] = Path("flow.svg"),
           detail: Annotated[Detail, typer.Option(help="one node per layer, per step or per level")] = Detail.layer) -> None:
    """Draw SPEC's graph with Graphviz (format from the output's suffix)."""
    _, graph = load_validated(spec)
    path = render_diagram(graph, out, detail.value)
    console.print(f"wrote {path}", markup=False)


@app.command()
@reports_errors
def report(spec: SpecPath,
           device: Annotated[str, typer.Option(help="device profile (cpu is measured on the spot)")] = "a100",
           batch: Annotated[int, typer.Option(min=1, help="batch size")] = 64,
           format: Annotated[Format, typer.Option("--format", help="table, json or markdown")] = Format.table,
           dtype: Annotated[str, typer.Option(help="dtype whose peak FLOP/s the roofline uses")] = "float32",
           devices: Annotated[Optional[Path], typer.Option(help="YAML file of extra device profiles")] = None,
           measure: Annotated[bool, typer.Option("--measure", help="also time the compiled model's layers here")] = False,
           detail: Annotated[Detail, typer.Option(help="one row per layer, per step or per level")] = Detail.layer) -> None:
    """Params, FLOPs (forward, inverse, log-det), activation memory and roofline time of SPEC (a flow, or a VAE's parts)."""
    parsed, _ = load_validated(spec)
    result = grouped(report_spec(parsed, device, batch, dtype, devices, measure), detail.value)
    if format is Format.json:
        print(to_json(result))
    elif format is Format.markdown:
        print(to_markdown(result), end="")
    else:
        console.print(to_table(result))
        for line in summary_lines(result):
            console.print(line, markup=False)
