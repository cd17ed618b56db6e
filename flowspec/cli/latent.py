"""``encode``, ``decode``, ``reconstruct``, ``interpolate``, ``manipulate``: a trained flow's
latents from the command line (the work lives in :mod:`flowspec.compile.latents` and
:mod:`flowspec.data.images`).

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

from flowspec.cli.app import TitleOption, app, console, errors, reports_errors
from flowspec.cli.bounds import finite_temperature, writable_folder
from flowspec.errors import DataError, FlowSpecError

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
SeedOption = Annotated[int, typer.Option(help="seed of resampled factored latents")]
LabelsOption = Annotated[bool, typer.Option("--labels", help="name the grid's columns (a matplotlib figure: flowspec[plot])")]


class _Run:
    """A checkpoint's flow and the data set it was trained on (for integer INPUTS and labels)."""

    def __init__(self, checkpoint: Path, data: str | None, data_dir: Path | None, split: str):
        from flowspec.compile.export import MODEL_FORMAT, load_model, read_checkpoint

        self.model = load_model(checkpoint)
        info = read_checkpoint(checkpoint, MODEL_FORMAT).get("data") or {}
        self.data = data or info.get("kind") or "digits"
        self.data_dir = data_dir if data_dir is not None else (info.get("dir") if data is None else None)
        if split not in ("train", "test"):
            raise FlowSpecError(f"--split {split!r}: train or test")
        self.split = split
        self._dataset = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape)

    @property
    def levels(self) -> int:
        return self.model.levels

    def dataset(self):
        if self._dataset is None:
            from flowspec.data import load_data

            self._dataset = load_data(self.data, self.data_dir, self.shape, self.levels)
        return self._dataset

    def examples(self, indices: list[int], split: str | None = None):
        split = split or self.split
        part = getattr(self.dataset(), split)
        for i in indices:
            if not -len(part) <= i < len(part):
                raise DataError(f"index {i} out of range: the {split} split of {self.data} has {len(part)} examples")
        return part[indices]

    def encode(self, x: torch.Tensor, progress: bool, what: str = "encode"):
        from flowspec.compile.latents import encode

        with _progress_bar(progress and len(x) > 256, len(x), what) as advance:
            return encode(self.model, x, progress=advance)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, what: str):
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _indices(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise FlowSpecError(f"--index {text!r}: integers, e.g. 3,17,42") from None


def _is_index(token: str) -> bool:
    return token.lstrip("-").isdigit() and not Path(token).exists()


def _gather(run: _Run, inputs: list[str] | None, index: str | None):
    """INPUTS (and --index) as one batch of examples, in order."""
    from flowspec.data.images import read_examples

    tokens = list(inputs or [])
    indices = _indices(index) + [int(t) for t in tokens if _is_index(t)]
    files = [Path(t) for t in tokens if not _is_index(t)]
    parts = []
    if files:
        parts.append(read_examples(files, run.shape, run.levels))
    if indices:
        parts.append(run.examples(indices))
    if not parts:
        raise DataError("no inputs: give image files, a .npy/.npz, or --index into the data set")
    return torch.cat(parts)


def _is_latents_file(token: str) -> bool:
    from flowspec.compile.latents import LATENTS_FORMAT

    path = Path(token)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return "format" in loaded.files and str(loaded["format"]) == LATENTS_FORMAT
    except Exception:  # not a readable .npz: reading it as examples says so in one line
        return False


def _latents_of(run: _Run, token: str, progress: bool):
    """One INPUT as latents: a latents .npz (from `flowspec encode`) as it is, anything else encoded."""
    from flowspec.compile.latents import Latents, check_latents

    if _is_latents_file(token):
        latents = Latents.load(token)
        check_latents(run.model, latents, token)
        return latents
    return run.encode(_gather(run, [token], None), progress)


def _inputs_as_latents(run: _Run, inputs: list[str] | None, index: str | None, progress: bool):
    """INPUTS in order (latents .npz as they are, the rest encoded), then --index."""
    from flowspec.compile.latents import Latents

    parts = [_latents_of(run, token, progress) for token in inputs or []]
    if index:
        parts.append(run.encode(_gather(run, [], index), progress))
    if not parts:
        raise DataError("no inputs: give image files, a .npy/.npz, latents .npz, or --index into the data set")
    return Latents.cat(parts) if len(parts) > 1 else parts[0]


def _write(x: torch.Tensor, levels: int, rows: int, cols: int, output: Path, title: str | None = None,
           column_labels: list[str] | None = None, column_name: str | None = None) -> Path:
    """A PNG grid of ``rows x cols`` (``.png``), or integer levels ``(N, *shape)`` in the grid's
    reading order, row after row (``.npy``: the layout ``flowspec encode`` reads back). With a
    ``title`` or ``column_labels`` the grid is a matplotlib figure (``.png``, ``.svg``, ``.pdf``)."""
    from flowspec.data.images import save_grid, to_pixels

    if output.suffix == ".npy":
        output.parent.mkdir(parents=True, exist_ok=True)
        np.save(output, x.detach().cpu().numpy().astype(np.int64))
        return output
    if title is not None or column_labels is not None:
        from flowspec.plot import save_figure
        from flowspec.plot.grids import grid_figure

        figure = grid_figure(to_pixels(x, levels), cols, title, column_labels=column_labels, column_name=column_name)
        return save_figure(figure, output)
    if output.suffix.lower() != ".png":
        raise FlowSpecError(f"{output}: write a .png (grid) or .npy (levels)")
    return save_grid(x, levels, rows, cols, output)


def _strengths(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise FlowSpecError(f"--strengths {text!r}: {part.strip()!r} is not a number "
                                f"(give numbers separated by commas, e.g. -1,-0.5,0,0.5,1)") from None
        if not math.isfinite(value):
            raise FlowSpecError(f"--strengths {text!r}: {part.strip()!r} is not a finite number")
        values.append(value)
    return values


def _group(run: _Run, value: str, flag: str, progress: bool):
    """``--toward`` / ``--away``: a class (name or index) of the data set's labelled training
    split, or a file / folder of that group's examples; returns its latents."""
    from flowspec.data.images import IMAGE_SUFFIXES, read_examples

    path = Path(value)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".npz"})
        if not files:
            raise DataError(f"{flag} {value}: no images or arrays in this folder")
        return run.encode(read_examples(files, run.shape, run.levels), progress, what=flag.lstrip("-"))
    if path.suffix.lower() in IMAGE_SUFFIXES | {".npy", ".npz"}:
        return run.encode(read_examples([path], run.shape, run.levels), progress, what=flag.lstrip("-"))
    dataset = run.dataset()
    if not dataset.has_labels:
        raise FlowSpecError(f"{flag} {value}: data set {dataset.name!r} has no labels; give a folder or .npy of "
                            f"the group's examples instead")
    names = list(dataset.classes or (str(k) for k in range(dataset.num_classes)))
    if value in names:
        label = names.index(value)
    elif value.isdigit() and int(value) < len(names):
        label = int(value)
    else:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise FlowSpecError(f"{flag} {value!r}: unknown class; {dataset.name} has classes {shown} "
                            f"(or give a folder / .npy of examples)")
    chosen = dataset.labels_train == label
    if not bool(chosen.any()):
        raise FlowSpecError(f"{flag} {value!r}: no training example of this class in {dataset.name}")
    return run.encode(dataset.train[chosen], progress, what=f"class {names[label]}")


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
    run = _Run(checkpoint, data, data_dir, split)
    x = _gather(run, inputs, index)
    latents = run.encode(x, progress)
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
           seed: SeedOption = 0, title: TitleOption = None) -> None:
    """Decode LATENTS to data space: integer levels (decode(encode(x)) == x), as a PNG grid and .npy."""
    from flowspec.compile.latents import Latents, check_latents
    from flowspec.compile.latents import decode as decode_latents

    writable_folder(output.parent)
    if temperature is not None:
        finite_temperature(temperature)
    run = _Run(checkpoint, None, None, "test")
    loaded = Latents.load(latents)
    check_latents(run.model, loaded, str(latents))
    generator = torch.Generator().manual_seed(seed)
    x = decode_latents(run.model, loaded, temperature=temperature, generator=generator)
    v = None
    if continuous:  # before anything is written: a VAE refuses it
        v = decode_latents(run.model, loaded, continuous=True, temperature=temperature,
                           generator=torch.Generator().manual_seed(seed))
    cols = math.ceil(math.sqrt(len(x)))
    written = [_write(x, run.levels, math.ceil(len(x) / cols), cols, output, title)]
    if output.suffix == ".png":
        np.save(output.with_suffix(".npy"), x.cpu().numpy().astype(np.int64))
        written.append(output.with_suffix(".npy"))
    if v is not None:
        path = output.with_suffix(".continuous.npy")
        np.save(path, v.cpu().numpy())
        written.append(path)
    console.print(f"decoded {len(x)} examples; wrote {', '.join(map(str, written))}", markup=False)


@app.command()
@reports_errors
def reconstruct(checkpoint: Checkpoint, inputs: Inputs = None,
                output: Annotated[Path, typer.Option("--output", "-o", help="PNG: each input beside its reconstruction")] = Path("reconstruct.png"),
                data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
                index: IndexOption = None, progress: ProgressOption = True, title: TitleOption = None,
                labels: LabelsOption = False) -> None:
    """Print max |decode(encode(x)) - x| in data space (and before flooring); write the inputs
    beside their reconstructions."""
    from flowspec.compile.latents import round_trip_error
    from flowspec.compile.latents import decode as decode_latents

    writable_folder(output.parent)
    run = _Run(checkpoint, data, data_dir, split)
    x = _gather(run, inputs, index)
    latents = run.encode(x, progress)
    data_error, continuous_error = round_trip_error(run.model, x, latents)
    back = decode_latents(run.model, latents).cpu()
    pairs = torch.stack([x, back.to(x.dtype)], dim=1).reshape(2 * len(x), *x.shape[1:])
    path = _write(pairs, run.levels, len(x), 2, output, title, ["input", "decode(encode(x))"] if labels else None)
    before = f" (before flooring: {continuous_error:.3g})" if continuous_error is not None else ""
    console.print(f"max |decode(encode(x)) - x| = {data_error:g} levels over {len(x)} examples{before}; "
                  f"wrote {path}", markup=False)


@app.command()
@reports_errors
def interpolate(checkpoint: Checkpoint,
                a: Annotated[str, typer.Argument(help="start: image, .npy/.npz, latents .npz or an index", show_default=False)],
                b: Annotated[str, typer.Argument(help="end: as A, with as many examples", show_default=False)],
                steps: Annotated[int, typer.Option(min=2, help="images from A to B, both included")] = 8,
                method: Annotated[str, typer.Option(help="linear | spherical")] = "linear",
                top_only: Annotated[bool, typer.Option("--top-only", help="move the top latent only; factored ones from A")] = False,
                temperature: Annotated[Optional[float], typer.Option(min=0.0, help="with --top-only: redraw the factored latents at this temperature instead")] = None,
                seed: SeedOption = 0,
                output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (a row per pair) or .npy")] = Path("interpolate.png"),
                data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
                progress: ProgressOption = True, title: TitleOption = None, labels: LabelsOption = False) -> None:
    """Decode STEPS points between the latents of A and B (every latent by default: both ends
    reproduce A and B exactly)."""
    from flowspec.compile.latents import decode as decode_latents
    from flowspec.compile.latents import interpolate as interpolate_latents

    if temperature is not None and not top_only:
        raise FlowSpecError("--temperature redraws the factored latents, which only --top-only leaves free")
    if temperature is not None:
        finite_temperature(temperature)
    writable_folder(output.parent)
    run = _Run(checkpoint, data, data_dir, split)
    start, end = _latents_of(run, a, progress), _latents_of(run, b, progress)
    path_latents = interpolate_latents(start, end, steps, method, top_only)
    x = decode_latents(run.model, path_latents, temperature=temperature,
                       generator=torch.Generator().manual_seed(seed))
    points = [f"{i / (steps - 1):.2g}" for i in range(steps)] if labels else None
    path = _write(x, run.levels, len(start), steps, output, title, points, "t (A at 0, B at 1)" if labels else None)
    how = f"{method}, " + ("top latent only, factored " + ("from A" if temperature is None else
                                                           f"redrawn at T={temperature:g}") if top_only else "every latent")
    console.print(f"{len(start)} x {steps} interpolation ({how}); wrote {path}", markup=False)


@app.command()
@reports_errors
def manipulate(checkpoint: Checkpoint, inputs: LatentInputs = None,
               toward: Annotated[Optional[str], typer.Option(help="class label (digits), or a folder / .npy of examples with the attribute")] = None,
               away: Annotated[Optional[str], typer.Option(help="class label, or a folder / .npy of examples without it")] = None,
               strengths: Annotated[str, typer.Option(help="multiples of the direction, comma-separated")] = "-1,-0.5,0,0.5,1",
               direction: Annotated[Optional[Path], typer.Option(help="a direction .npz saved with --save-direction")] = None,
               save_direction: Annotated[Optional[Path], typer.Option(help="write the direction to this .npz")] = None,
               output: Annotated[Path, typer.Option("--output", "-o", help=".png grid (a row per input) or .npy")] = Path("manipulate.png"),
               data: DataOption = None, data_dir: DataDirOption = None, split: SplitOption = "test",
               index: IndexOption = None, progress: ProgressOption = True, title: TitleOption = None,
               labels: LabelsOption = False) -> None:
    """Move INPUTS' latents along mean(TOWARD) - mean(AWAY) at each strength (Glow's attribute
    manipulation); strength 0 is the input itself."""
    from flowspec.compile.latents import Direction, attribute_direction, check_latents
    from flowspec.compile.latents import decode as decode_latents
    from flowspec.compile.latents import manipulate as move

    values = _strengths(strengths)
    if direction is not None and (toward is not None or away is not None):
        raise FlowSpecError("give either --direction or --toward/--away, not both")
    if direction is None and (toward is None or away is None):
        raise FlowSpecError("give --toward and --away (classes or example folders), or --direction FILE")
    for path in (output, save_direction):
        if path is not None:
            writable_folder(path.parent)
    run = _Run(checkpoint, data, data_dir, split)
    latents = _inputs_as_latents(run, inputs, index, progress)
    if direction is not None:
        chosen = Direction.load(direction)
        check_latents(run.model, chosen, str(direction))
    else:
        chosen = attribute_direction(_group(run, toward, "--toward", progress), _group(run, away, "--away", progress),
                                     toward, away)
    if save_direction is not None:
        chosen.save(save_direction)
    moved = move(latents, chosen, values)
    path = _write(decode_latents(run.model, moved), run.levels, len(latents), len(values), output, title,
                  [f"{value:g}" for value in values] if labels else None, "strength" if labels else None)
    groups = f"toward {chosen.toward!r} ({chosen.counts[0]}) away from {chosen.away!r} ({chosen.counts[1]}), "
    console.print(f"direction {groups}norm {chosen.norm():.3g}"
                  + (f", saved to {save_direction}" if save_direction is not None else "")
                  + f"; {len(latents)} x {len(values)} grid; wrote {path}", markup=False)
