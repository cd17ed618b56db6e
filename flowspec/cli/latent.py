"""``encode``, ``decode``, ``reconstruct``, ``interpolate``, ``manipulate``: a trained model's
latents from the command line. The work lives in the library: :class:`flowspec.train.inputs.TrainedRun`
resolves INPUTS, classes and example folders; :mod:`flowspec.core.latents` encodes, decodes,
interpolates and manipulates. These verbs parse options into those calls and print the result.

INPUTS are image files, ``.npy`` / ``.npz`` arrays of examples, or integers: indices into
``--split`` of ``--data`` (the run's data set unless given), so ``--data digits --index 3 17 42``
and ``--index 3,17,42`` both work.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import typer

from flowspec.cli.app import app, console, errors, reports_errors
from flowspec.cli.bounds import (MAX_OUTPUT_EXAMPLES, MAX_SEED, MAX_STEPS_BETWEEN, MAX_STRENGTHS, finite_temperature,
                                  refuse_too_many, writable_folder)
from flowspec.errors import FlowSpecError
from flowspec.files import save_array

Checkpoint = Annotated[Path, typer.Argument(help="RUN/last.pt, best.pt or a saved model", show_default=False)]
Inputs = Annotated[Optional[list[str]], typer.Argument(
    help="image files, .npy/.npz arrays, or indices into --split of --data", show_default=False)]
LatentInputs = Annotated[Optional[list[str]], typer.Argument(
    help="image files, .npy/.npz arrays, latents .npz from `flowspec encode`, or indices into --split of --data",
    show_default=False)]
DataOption = Annotated[Optional[str], typer.Option("--data", help="data set of integer INPUTS and labels (default: the run's)")]
DataDirOption = Annotated[Optional[Path], typer.Option("--data-dir", help="folder (or .npz/.npy) of that data set")]
SplitOption = Annotated[str, typer.Option("--split", help="train | test: the split integer INPUTS index")]
IndexOption = Annotated[Optional[str], typer.Option("--index", help="indices into the split, e.g. 3,17,42 (or --index 3 17 42)")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="rich progress bar on long encodes")]
SeedOption = Annotated[int, typer.Option(min=0, max=MAX_SEED, help="seed of resampled factored latents")]


def _run(checkpoint: Path, data: str | None, data_dir: Path | None, split: str, progress: bool = False):
    """The checkpoint's :class:`~flowspec.train.inputs.TrainedRun`, with a progress bar on long encodes."""
    from flowspec.train.inputs import TrainedRun

    if split not in ("train", "test"):
        raise FlowSpecError(f"--split {split!r}: train or test")
    return TrainedRun(checkpoint, data, data_dir, split, progress=_progress_bar if progress else None)


@contextlib.contextmanager
def _progress_bar(total: int, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _indices(text: str | None) -> list[int]:
    """``--index 3,17,42`` (or ``'3 17 42'``) as integers: ASCII digits only, at most
    :data:`MAX_INDICES` of them."""
    from flowspec.train.inputs import INTEGER, MAX_INDICES

    if not text:
        return []
    parts = text.replace(",", " ").split()
    if not all(INTEGER.fullmatch(part) for part in parts):
        raise FlowSpecError(f"--index {text[:80]!r}: integers, e.g. 3,17,42")
    if len(parts) > MAX_INDICES:
        raise FlowSpecError(f"--index: {len(parts):,} indices; at most {MAX_INDICES:,} in one run")
    return [int(part) for part in parts]


def _write(x: torch.Tensor, levels: int, rows: int, cols: int, output: Path) -> Path:
    """A PNG grid (``.png``) or integer levels ``(rows, cols, *shape)`` (``.npy``)."""
    from flowspec.data.images import save_grid

    if output.suffix == ".npy":
        array = x.detach().cpu().numpy().astype(np.int64)
        save_array(output, array.reshape(rows, cols, *array.shape[1:]) if rows * cols == len(array) else array)
        return output
    if output.suffix.lower() != ".png":
        raise FlowSpecError(f"{output}: write a .png (grid) or .npy (levels)")
    return save_grid(x, levels, rows, cols, output)


def _strengths(text: str) -> list[float]:
    parts = text.split(",")
    if len(parts) > MAX_STRENGTHS:
        raise FlowSpecError(f"--strengths: {len(parts):,} values; at most {MAX_STRENGTHS}")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise FlowSpecError(f"--strengths {text!r}: {part.strip()!r} is not a number "
                                f"(give numbers separated by commas, e.g. -1,-0.5,0,0.5,1)") from None
        if not math.isfinite(value):
            raise FlowSpecError(f"--strengths {text!r}: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


# -- verbs ------------------------------------------------------------------------------------
@app.command()
@reports_errors
def encode(checkpoint: Checkpoint, inputs: Inputs = None,
           output: Annotated[Path, typer.Option("--output", "-o", help="latents .npz")] = Path("latents.npz"),
           data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
           index: IndexOption = None, progress: ProgressOption = True) -> None:
    """Encode INPUTS at the centre of each bin into every latent (factored ones included) and
    log p; write them to an .npz that `flowspec decode` reads."""
    writable_folder(output.parent)
    run = _run(checkpoint, data, data_dir, split, progress)
    latents = run.encode(run.examples_of(inputs or [], _indices(index)))
    latents.save(output)
    line = f"wrote {len(latents)} examples' latents {latents.shapes} to {output}"
    density = latents.log_density
    if density is not None:
        bits = -density.mean().item() / (math.prod(run.shape) * math.log(2))
        line += f"; log p(v) at the bins' centres: mean {density.mean().item():.2f} nats ({bits:.3f} bits/dim)"
    else:
        line += " (the posterior's centre)"
    console.print(line, markup=False)


@app.command()
@reports_errors
def decode(checkpoint: Checkpoint,
           latents: Annotated[Path, typer.Argument(help="latents .npz from `flowspec encode`", show_default=False)],
           output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (+ .npy of levels beside it) or .npy")] = Path("decoded.png"),
           continuous: Annotated[bool, typer.Option("--continuous", help="also write the point v before flooring (STEM.continuous.npy)")] = False,
           temperature: Annotated[Optional[float], typer.Option(min=0.0, help="redraw the factored latents at this temperature (keep the top one)")] = None,
           seed: SeedOption = 0) -> None:
    """Decode LATENTS to data space: integer levels (decode(encode(x)) == x), as a PNG grid and .npy."""
    from flowspec.core.latents import Latents, check_latents
    from flowspec.core.latents import decode as decode_latents

    writable_folder(output.parent)
    if temperature is not None:
        finite_temperature(temperature)
    run = _run(checkpoint, None, None, "test")
    loaded = Latents.load(latents)
    check_latents(run.model, loaded, str(latents))
    generator = torch.Generator().manual_seed(seed)
    x = decode_latents(run.model, loaded, temperature=temperature, generator=generator)
    v = None
    if continuous:  # before anything is written: a VAE refuses it
        v = decode_latents(run.model, loaded, continuous=True, temperature=temperature,
                           generator=torch.Generator().manual_seed(seed))
    cols = math.ceil(math.sqrt(len(x)))
    written = [_write(x, run.levels, math.ceil(len(x) / cols), cols, output)]
    if output.suffix == ".png":
        save_array(output.with_suffix(".npy"), x.cpu().numpy().astype(np.int64))
        written.append(output.with_suffix(".npy"))
    if v is not None:
        path = output.with_suffix(".continuous.npy")
        save_array(path, v.cpu().numpy())
        written.append(path)
    console.print(f"decoded {len(x)} examples; wrote {', '.join(map(str, written))}", markup=False)


@app.command()
@reports_errors
def reconstruct(checkpoint: Checkpoint, inputs: Inputs = None,
                output: Annotated[Path, typer.Option("--output", "-o", help="PNG: each input beside its reconstruction")] = Path("reconstruct.png"),
                data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
                index: IndexOption = None, progress: ProgressOption = True) -> None:
    """Print max |decode(encode(x)) - x| in data space (and before flooring); write the inputs
    beside their reconstructions."""
    from flowspec.core.latents import round_trip_error
    from flowspec.core.latents import decode as decode_latents

    writable_folder(output.parent)
    run = _run(checkpoint, data, data_dir, split, progress)
    x = run.examples_of(inputs or [], _indices(index))
    latents = run.encode(x)
    data_error, continuous_error = round_trip_error(run.model, x, latents)
    back = decode_latents(run.model, latents).cpu()
    pairs = torch.stack([x, back.to(x.dtype)], dim=1).reshape(2 * len(x), *x.shape[1:])
    path = _write(pairs, run.levels, len(x), 2, output)
    before = f" (before flooring: {continuous_error:.3g})" if continuous_error is not None else ""
    console.print(f"max |decode(encode(x)) - x| = {data_error:g} levels over {len(x)} examples{before}; "
                  f"wrote {path}", markup=False)


@app.command()
@reports_errors
def interpolate(checkpoint: Checkpoint,
                a: Annotated[str, typer.Argument(help="start: image, .npy/.npz, latents .npz or an index", show_default=False)],
                b: Annotated[str, typer.Argument(help="end: as A, with as many examples", show_default=False)],
                steps: Annotated[int, typer.Option(min=2, max=MAX_STEPS_BETWEEN, help=f"images from A to B, both included (pairs x steps at most {MAX_OUTPUT_EXAMPLES})")] = 8,
                method: Annotated[str, typer.Option(help="linear | spherical")] = "linear",
                top_only: Annotated[bool, typer.Option("--top-only", help="move the top latent only; factored ones from A")] = False,
                temperature: Annotated[Optional[float], typer.Option(min=0.0, help="with --top-only: redraw the factored latents at this temperature instead")] = None,
                seed: SeedOption = 0,
                output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (a row per pair) or .npy")] = Path("interpolate.png"),
                data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
                progress: ProgressOption = True) -> None:
    """Decode STEPS points between the latents of A and B (every latent by default: both ends
    reproduce A and B exactly)."""
    from flowspec.core.latents import decode as decode_latents
    from flowspec.core.latents import interpolate as interpolate_latents

    if temperature is not None and not top_only:
        raise FlowSpecError("--temperature redraws the factored latents, which only --top-only leaves free")
    if temperature is not None:
        finite_temperature(temperature)
    writable_folder(output.parent)
    run = _run(checkpoint, data, data_dir, split, progress)
    start, end = run.latents_of(a), run.latents_of(b)
    refuse_too_many(len(start) * steps, f"interpolate: {len(start)} pairs x --steps {steps}")
    path_latents = interpolate_latents(start, end, steps, method, top_only)
    x = decode_latents(run.model, path_latents, temperature=temperature,
                       generator=torch.Generator().manual_seed(seed))
    path = _write(x, run.levels, len(start), steps, output)
    how = f"{method}, " + ("top latent only, factored " + ("from A" if temperature is None else
                                                           f"redrawn at T={temperature:g}") if top_only else "every latent")
    console.print(f"{len(start)} x {steps} interpolation ({how}); wrote {path}", markup=False)


@app.command()
@reports_errors
def manipulate(checkpoint: Checkpoint, inputs: LatentInputs = None,
               toward: Annotated[Optional[str], typer.Option(help="class label (digits), or a folder / .npy of examples with the attribute")] = None,
               away: Annotated[Optional[str], typer.Option(help="class label, or a folder / .npy of examples without it")] = None,
               strengths: Annotated[str, typer.Option(help=f"multiples of the direction, comma-separated (at most {MAX_STRENGTHS}; inputs x strengths at most {MAX_OUTPUT_EXAMPLES})")] = "-1,-0.5,0,0.5,1",
               direction: Annotated[Optional[Path], typer.Option(help="a direction .npz saved with --save-direction")] = None,
               save_direction: Annotated[Optional[Path], typer.Option(help="write the direction to this .npz")] = None,
               output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (a row per input) or .npy")] = Path("manipulate.png"),
               data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
               index: IndexOption = None, progress: ProgressOption = True) -> None:
    """Move INPUTS' latents along mean(TOWARD) - mean(AWAY) at each strength (Glow's attribute
    manipulation); strength 0 is the input itself."""
    from flowspec.core.latents import Direction, check_latents
    from flowspec.core.latents import manipulate as move

    values = _strengths(strengths)
    if direction is not None and (toward is not None or away is not None):
        raise FlowSpecError("give either --direction or --toward/--away, not both")
    if direction is None and (toward is None or away is None):
        raise FlowSpecError("give --toward and --away (classes or example folders), or --direction FILE")
    for path in (output, save_direction):
        if path is not None:
            writable_folder(path.parent)
    run = _run(checkpoint, data, data_dir, split, progress)
    latents = run.inputs_as_latents(inputs or [], _indices(index))
    refuse_too_many(len(latents) * len(values), f"manipulate: {len(latents)} inputs x {len(values)} strengths")
    if direction is not None:
        chosen = Direction.load(direction)
        check_latents(run.model, chosen, str(direction))
    else:
        chosen = run.direction(toward, away, names=("--toward", "--away"))
    if save_direction is not None:
        chosen.save(save_direction)
    moved = move(latents, chosen, values)
    path = _write(run.decode(moved), run.levels, len(latents), len(values), output)
    groups = f"toward {chosen.toward!r} ({chosen.counts[0]}) away from {chosen.away!r} ({chosen.counts[1]}), "
    console.print(f"direction {groups}norm {chosen.norm():.3g}"
                  + (f", saved to {save_direction}" if save_direction is not None else "")
                  + f"; {len(latents)} x {len(values)} grid; wrote {path}", markup=False)
