"""``build``, ``validate``, ``expand``, ``check``, ``schema``: the core compiler's verbs.

What only some verbs need (compiling, checking, the schema generator) is imported inside them, so
that ``validate`` and ``expand`` start fast: they are meant for editors and pre-commit hooks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from flowspec.cli.app import EXIT_FAILURE, SetOption, app, console, reports_errors
from flowspec.cli.bounds import MAX_WIDTH, load_validated, named_folder, refuse_oversized, refuse_oversized_check
from flowspec.family import family_of
from flowspec.files import write_text

SpecPath = Annotated[Path, typer.Argument(help="the spec's YAML file", show_default=False)]


@app.command()
@reports_errors
def validate(spec: SpecPath, overrides: SetOption = None) -> None:
    """Check every field, dimension and invertibility rule of SPEC; exit 2 on any problem."""
    _, graph = load_validated(spec, overrides=overrides)
    for warning in getattr(graph, "warnings", ()):  # problems a user may mean: printed, not fatal
        print(warning.text("warning"), file=sys.stderr)
    console.print(f"{spec}: ok ({len(graph.layers)} layers, input {graph.input_shape}, "
                  f"latents {graph.latent_shapes})", markup=False)


@app.command()
@reports_errors
def expand(spec: SpecPath, overrides: SetOption = None) -> None:
    """Print SPEC (with any --set applied) with its compact forms (levels/steps/step, repeat)
    written out, one layer a row (a VAE spec: every default written out)."""
    parsed, _ = load_validated(spec, overrides=overrides)
    print(yaml.safe_dump(family_of(parsed).explicit_spec(parsed), sort_keys=False, default_flow_style=None), end="")


@app.command()
@reports_errors
def build(spec: SpecPath,
          out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output folder [default: build/<spec name>]")] = None,
          export: Annotated[bool, typer.Option(help="also write torch.export programs (.pt2)")] = True,
          overrides: SetOption = None) -> None:
    """Validate and compile SPEC; print the build table and write the output folder. A model whose
    parameters (and one small pass) cannot fit in this machine's memory is refused first."""
    from rich.table import Table

    from flowspec.compile.build import build_folder

    parsed, graph = load_validated(spec, overrides=overrides)
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
          width: Annotated[int, typer.Option(min=1, max=MAX_WIDTH, help="conditioner width of the narrow copy")] = 8,
          tolerance: Annotated[float, typer.Option(min=0.0, max=1.0, help="largest error accepted")] = 1e-6,
          overrides: SetOption = None) -> None:
    """Round trip and log-det vs the autograd Jacobian on a narrow float64 copy of SPEC."""
    parsed, _ = load_validated(spec, overrides=overrides)
    result = family_of(parsed).check(parsed, width=width, tolerance=tolerance, guard=refuse_oversized_check)
    console.print(f"narrow copy ({result.checked}): input {result.input_shape}, width {width}, float64", markup=False)
    console.print(f"round-trip error   max|f^-1(f(x)) - x|        = {result.roundtrip_error:.3e}", markup=False)
    console.print(f"log-det error      max|logdet - slogdet(J)|   = {result.logdet_error:.3e} (relative)", markup=False)
    console.print(f"inverse log-det    max|logdet_inv + logdet|   = {result.inverse_logdet_error:.3e}", markup=False)
    if result.triangular_error is not None:
        what = "max|dy_i/dx_j|, j after i" if result.checked == "flow" else "max|dMADE_i/dz_j|, j >= i"
        console.print(f"autoregressive     {what:24s}   = {result.triangular_error:.3e} (in the order)", markup=False)
    if not result.ok:
        console.print(f"FAILED: above tolerance {tolerance:g}", markup=False)
        raise typer.Exit(EXIT_FAILURE)
    console.print(f"ok (tolerance {tolerance:g})", markup=False)


def spec_json_schema() -> dict:
    """The JSON Schema of the spec format (see :func:`flowspec.spec.schema.spec_json_schema`)."""
    from flowspec.spec.schema import spec_json_schema as generate

    return generate()


@app.command()
@reports_errors
def schema(out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file instead of stdout")] = None) -> None:
    """Write the JSON Schema (Draft 2020-12) of the spec format, flows and VAEs (for YAML editors:
    a spec's first line ``# yaml-language-server: $schema=PATH`` names it)."""
    from flowspec.spec.schema import schema_text

    text = schema_text()
    if out:
        write_text(out, text, make_parent=False)
        console.print(f"wrote {out}", markup=False)
    else:
        print(text, end="")
