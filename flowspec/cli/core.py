"""``build``, ``validate``, ``expand``, ``check``, ``schema``: the core compiler's verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional, Union

import typer
import yaml
from pydantic import TypeAdapter
from rich.table import Table

from flowspec.cli.app import EXIT_FAILURE, app, console, reports_errors
from flowspec.cli.bounds import load_validated, named_folder, refuse_oversized
from flowspec.compile.build import build_folder
from flowspec.family import family_of
from flowspec.spec import explicit_spec
from flowspec.spec.models import SPEC_MODELS

SpecPath = Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)]


@app.command()
@reports_errors
def validate(spec: SpecPath) -> None:
    """Check every field, dimension and invertibility rule of SPEC; exit 2 on any problem."""
    _, graph = load_validated(spec)
    console.print(f"{spec}: ok ({len(graph.layers)} layers, input {graph.input_shape}, "
                  f"latents {graph.latent_shapes})", markup=False)


@app.command()
@reports_errors
def expand(spec: SpecPath) -> None:
    """Print SPEC with its compact forms (levels/steps/step, repeat) written out, one layer a row."""
    parsed, _ = load_validated(spec, "expand")
    print(yaml.safe_dump(explicit_spec(parsed), sort_keys=False, default_flow_style=None), end="")


@app.command()
@reports_errors
def build(spec: SpecPath,
          out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output folder [default: build/<spec name>]")] = None,
          export: Annotated[bool, typer.Option(help="also write torch.export programs (.pt2)")] = True) -> None:
    """Validate and compile SPEC; print the build table and write the output folder. A model whose
    parameters (and one small pass) cannot fit in this machine's memory is refused first."""
    parsed, graph = load_validated(spec, "build")
    refuse_oversized(graph)
    folder = out or named_folder(Path("build"), parsed.name)
    result = build_folder(parsed, folder, export=export)
    table = Table(title=f"{parsed.name}: {result.graph.input_shape} -> latents {result.graph.latent_shapes}")
    for column in ("#", "layer", "kind", "input", "output", "params"):
        table.add_column(column, justify="right" if column in ("#", "params") else "left")
    for row in result.rows:
        table.add_row(str(row.index), row.name, row.kind, str(row.in_shape), str(row.out_shape), f"{row.params:,}")
    table.add_section()
    table.add_row("", "total", "", "", "", f"{result.total_params:,}")
    console.print(table)
    for what, path in result.files.items():
        console.print(f"wrote {what}: {path}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)


@app.command()
@reports_errors
def check(spec: SpecPath,
          width: Annotated[int, typer.Option(min=1, help="conditioner width of the narrow copy")] = 8,
          tolerance: Annotated[float, typer.Option(min=0.0, help="largest error accepted")] = 1e-6) -> None:
    """Round trip and log-det vs the autograd Jacobian on a narrow float64 copy of SPEC."""
    parsed, _ = load_validated(spec)
    result = family_of(parsed).check(parsed, width=width, tolerance=tolerance)
    console.print(f"narrow copy ({result.checked}): input {result.input_shape}, width {width}, float64", markup=False)
    console.print(f"round-trip error   max|f^-1(f(x)) - x|        = {result.roundtrip_error:.3e}", markup=False)
    console.print(f"log-det error      max|logdet - slogdet(J)|   = {result.logdet_error:.3e} (relative)", markup=False)
    console.print(f"inverse log-det    max|logdet_inv + logdet|   = {result.inverse_logdet_error:.3e}", markup=False)
    if result.triangular_error is not None:
        console.print(f"autoregressive     max|dMADE_i/dz_j|, j >= i = {result.triangular_error:.3e} (in the order)",
                      markup=False)
    if not result.ok:
        console.print(f"FAILED: above tolerance {tolerance:g}", markup=False)
        raise typer.Exit(EXIT_FAILURE)
    console.print(f"ok (tolerance {tolerance:g})", markup=False)


def spec_json_schema() -> dict:
    """One schema for both spec families: a flow spec or a ``model: vae`` spec."""
    schema = TypeAdapter(Union[tuple(SPEC_MODELS.values())]).json_schema()
    schema["title"] = "flowspec spec"
    return schema


@app.command()
@reports_errors
def schema(out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file instead of stdout")] = None) -> None:
    """Write the JSON Schema of the spec format, flows and VAEs (for YAML editors)."""
    text = json.dumps(spec_json_schema(), indent=2)
    if out:
        out.write_text(text + "\n")
        console.print(f"wrote {out}", markup=False)
    else:
        print(text)
