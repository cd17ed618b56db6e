"""``export``: a trained model in the formats other tools read (the work lives in
:mod:`flowspec.compile.export` and :mod:`flowspec.compile.onnx_export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flowspec.cli.app import app, console, reports_errors
from flowspec.cli.bounds import writable_folder
from flowspec.errors import FlowSpecError

FORMATS = ("onnx", "safetensors", "pt2")


@app.command()
@reports_errors
def export(checkpoint: Annotated[Path, typer.Argument(help="RUN/last.pt, best.pt, a saved model, a .safetensors or pretrained:NAME", show_default=False)],
           format: Annotated[str, typer.Option("--format", "-f", help="onnx | safetensors | pt2")] = "onnx",
           output: Annotated[Optional[Path], typer.Option("--output", "-o", help="folder (onnx, pt2) or file (safetensors) [beside the checkpoint]")] = None,
           check: Annotated[bool, typer.Option("--check/--no-check", help="run the exported programs against PyTorch")] = True) -> None:
    """Export a model (EMA weights): ONNX programs of the density and sampling directions
    (flowspec[onnx]), its weights as safetensors with the spec in the metadata (no pickle;
    flowspec[safetensors]), or torch.export programs (.pt2)."""
    from flowspec.compile.export import MODEL_FORMAT, load_model, read_checkpoint, resolve_model_path, save_safetensors
    from flowspec.family import family_of

    if format not in FORMATS:
        raise FlowSpecError(f"--format {format!r}: one of {', '.join(FORMATS)}")
    source = resolve_model_path(checkpoint)
    # beside the checkpoint (RUN/last.safetensors, RUN/last-onnx/); a shipped model's in this folder
    beside = Path(source.name) if str(checkpoint).startswith("pretrained:") else source
    model = load_model(checkpoint)
    if format == "safetensors":
        path = output or beside.with_suffix(".safetensors")
        if path.resolve() == source.resolve():
            raise FlowSpecError(f"{path}: is the model being exported; choose another -o")
        writable_folder(path.parent)
        data = read_checkpoint(checkpoint, MODEL_FORMAT).get("data")
        save_safetensors(model, path, data=data)
        console.print(f"wrote {path} ({path.stat().st_size:,} bytes; load it with flowspec.load_model)", markup=False)
        return
    folder = writable_folder(output or beside.with_name(f"{beside.stem}-{format}"))
    if format == "pt2":
        paths = family_of(model.spec).export(model, folder, check=check)  # a flow: density and sample; a VAE: sample
        console.print(f"wrote {' and '.join(str(path) for path in paths.values())}", markup=False)
        return
    from flowspec.compile.onnx_export import export_onnx

    result = export_onnx(model, folder, check=check)
    console.print(f"wrote {result.paths['density']} and {result.paths['sample']}", markup=False)
    for what in result.max_abs:
        console.print(f"onnxruntime vs PyTorch, {what}: max |difference| {result.max_abs[what]:.3g} "
                      f"({result.max_relative[what]:.3g} of the largest value)", markup=False)


@app.command()
@reports_errors
def pretrained() -> None:
    """List the pretrained models shipped with flowspec (use them as pretrained:NAME wherever a
    checkpoint is taken: flowspec sample pretrained:glow-digits)."""
    from flowspec.pretrained import PRETRAINED_FOLDER, records, shipped

    known = records()
    for name in shipped():
        record = known[name]
        console.print(f"pretrained:{name:<18} {record['test_bits_per_dim']:.4f} test bits/dim, {record['steps']} steps, "
                      f"{record['parameters']:,} parameters ({record['command']})", markup=False)
    console.print(f"files: {PRETRAINED_FOLDER}", markup=False)
