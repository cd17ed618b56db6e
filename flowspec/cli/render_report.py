"""``render`` (Graphviz diagram) and ``report`` (params, FLOPs, memory, roofline) of a spec."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from flowspec.cli.app import SetOption, app, console, reports_errors
from flowspec.cli.bounds import MAX_BATCH, load_validated

SpecPath = Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)]


class Detail(str, Enum):
    layer = "layer"
    step = "step"
    level = "level"


class DiagramDetail(str, Enum):
    auto = "auto"
    paper = "paper"
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
           detail: Annotated[DiagramDetail, typer.Option(
               help="paper: each repeated block once in a '× K' box; layer, step, level: one node per "
                    "layer, step or level; auto: paper when layer would draw more than 40 nodes")] = DiagramDetail.auto,
           overrides: SetOption = None) -> None:
    """Draw SPEC's graph with Graphviz (format from the output's suffix)."""
    from flowspec.render import render as render_diagram

    _, graph = load_validated(spec, overrides=overrides)
    path = render_diagram(graph, out, detail.value)
    console.print(f"wrote {path}", markup=False)


@app.command()
@reports_errors
def report(spec: SpecPath,
           device: Annotated[str, typer.Option(help="device profile (cpu is measured on the spot)")] = "a100",
           batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="batch size")] = 64,
           format: Annotated[Format, typer.Option("--format", help="table, json or markdown")] = Format.table,
           dtype: Annotated[str, typer.Option(help="dtype whose peak FLOP/s the roofline uses")] = "float32",
           devices: Annotated[Optional[Path], typer.Option(help="YAML file of extra device profiles")] = None,
           measure: Annotated[bool, typer.Option("--measure", help="also time the compiled model's layers here")] = False,
           detail: Annotated[Detail, typer.Option(help="one row per layer, per step or per level")] = Detail.layer,
           overrides: SetOption = None) -> None:
    """Params, FLOPs (forward, inverse, log-det), activation memory and roofline time of SPEC (a flow, or a VAE's parts).
    Into a pipe or a file, the table is plain text with every cell in full."""
    from flowspec.report import grouped, report_spec, summary_lines, to_json, to_markdown, to_table, to_text

    parsed, _ = load_validated(spec, overrides=overrides)
    result = grouped(report_spec(parsed, device, batch, dtype, devices, measure), detail.value)
    if format is Format.json:
        print(to_json(result))
    elif format is Format.markdown:
        print(to_markdown(result), end="")
    elif not console.is_terminal:
        print(to_text(result), end="")
    else:
        console.print(to_table(result))
        for line in summary_lines(result):
            console.print(line, markup=False)
