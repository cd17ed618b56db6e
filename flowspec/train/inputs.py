"""A trained model and the data set it was trained on, and how inputs given by name resolve to
examples and latents: files, indices into a split, a class name or label, a folder of examples.

    run = TrainedRun("runs/glow-digits/last.pt")
    x = run.examples_of(["face.png", 3, 17])                  # a file, then two test examples
    moved = run.manipulate([0, 1], toward="3", away="5")         # "manipulate toward class 3"

Every family works through the model protocol and its latent codec (:mod:`flowspec.core.latents`).
The command line (``flowspec encode``, ``manipulate``, ...) parses its options into these calls.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from flowspec.core.latents import (LATENTS_FORMAT, Direction, Latents, attribute_direction, check_latents, decode,
                                   encode, manipulate)
from flowspec.errors import DataError, FlowSpecError

#: file suffixes read as examples (images, arrays)
EXAMPLE_SUFFIXES = frozenset({".npy", ".npz"})
INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
MAX_INDICES = 1 << 16  # --index and integer INPUTS: examples gathered in one batch
#: ``progress(total, what)``: a context manager yielding ``advance(k)`` (or None) while encoding
Progress = Callable[[int, str], ContextManager]


def _no_progress(total: int, what: str) -> ContextManager:
    return contextlib.nullcontext(None)


def is_index(token) -> bool:
    """An int, or a string of an integer that names no existing file."""
    if isinstance(token, (int, np.integer)):
        return True
    text = str(token)
    return INTEGER.fullmatch(text) is not None and not Path(text).exists()


def is_latents_file(token) -> bool:
    """A ``.npz`` written by :meth:`Latents.save` (``flowspec encode``)."""
    path = Path(token)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return "format" in loaded.files and str(loaded["format"]) == LATENTS_FORMAT
    except Exception:  # not a readable .npz: reading it as examples says so in one line
        return False


class TrainedRun:
    """A checkpoint's model (``RUN/last.pt``, ``best.pt`` or a saved model; EMA weights) and its
    data set: ``data`` / ``data_dir`` default to the run's own (else the spec's ``training.data``);
    ``split`` is what indices index."""

    def __init__(self, checkpoint: str | Path, data: str | None = None, data_dir: str | Path | None = None,
                 split: str = "test", progress: Progress | None = None):
        from flowspec.compile.export import MODEL_FORMAT, load_model, read_checkpoint
        from flowspec.train.conditions import spec_data_set

        if split not in ("train", "test"):
            raise FlowSpecError(f"split {split!r}: train or test")
        self.model = load_model(checkpoint)
        info = read_checkpoint(checkpoint, MODEL_FORMAT).get("data") or {}
        self.data = data or info.get("kind") or spec_data_set(self.model.spec)
        self.data_dir = data_dir if data_dir is not None else (info.get("dir") if data is None else None)
        self.split = split
        self.progress = progress or _no_progress
        self._dataset = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.model.input_shape)

    @property
    def levels(self) -> int:
        return self.model.levels

    def dataset(self):
        """The data set (loaded on first use)."""
        if self._dataset is None:
            from flowspec.data import load_data

            self._dataset = load_data(self.data, self.data_dir, self.shape, self.levels)
        return self._dataset

    # -- examples -------------------------------------------------------------------------------
    def examples(self, indices: Sequence[int], split: str | None = None) -> Tensor:
        """The examples at ``indices`` of ``split`` (default: the run's)."""
        split = split or self.split
        part = getattr(self.dataset(), split)
        for i in indices:
            if not -len(part) <= i < len(part):
                raise DataError(f"index {i} out of range: the {split} split of {self.data} has {len(part)} examples")
        return part[list(indices)]

    def read(self, files: Sequence[str | Path], name: str | None = None) -> Tensor:
        """Image files, ``.npy`` / ``.npz`` arrays (a folder: its images and arrays, sorted), as
        integer levels of the model's input shape; ``name`` says where they came from in errors."""
        from flowspec.data.images import IMAGE_SUFFIXES, read_examples

        paths = []
        for file in map(Path, files):
            if file.is_dir():
                found = sorted(p for p in file.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | EXAMPLE_SUFFIXES)
                if not found:
                    raise DataError(f"{name + ' ' if name else ''}{file}: no images or arrays in this folder")
                paths += found
            else:
                paths.append(file)
        return read_examples(paths, self.shape, self.levels)

    def examples_of(self, inputs: Iterable = (), indices: Sequence[int] = ()) -> Tensor:
        """``inputs`` (files, arrays, indices: :func:`is_index`) as one batch: the files first, in
        order, then ``indices`` and the integer inputs."""
        tokens = list(inputs)
        numbered = list(indices) + [int(t) for t in tokens if is_index(t)]
        files = [Path(t) for t in tokens if not is_index(t)]
        parts = []
        if files:
            parts.append(self.read(files))
        if numbered:
            parts.append(self.examples(numbered))
        if not parts:
            raise DataError("no inputs: give image files, a .npy/.npz, or --index into the data set")
        return torch.cat(parts)

    # -- latents --------------------------------------------------------------------------------
    def encode(self, x: Tensor, what: str = "encode") -> Latents:
        """Every latent of ``x`` (:func:`flowspec.core.latents.encode`), with progress past 256."""
        with self.progress(len(x), what) if len(x) > 256 else contextlib.nullcontext(None) as advance:
            return encode(self.model, x, progress=advance)

    def latents_of(self, token) -> Latents:
        """One input as latents: a latents ``.npz`` as it is (checked against the model), anything
        else read (or indexed) and encoded."""
        if not is_index(token) and is_latents_file(token):
            latents = Latents.load(token)
            check_latents(self.model, latents, str(token))
            return latents
        return self.encode(self.examples_of([token]))

    def inputs_as_latents(self, inputs: Iterable = (), indices: Sequence[int] = ()) -> Latents:
        """``inputs`` in order (latents ``.npz`` as they are, the rest encoded), then ``indices``."""
        parts = [self.latents_of(token) for token in inputs]
        if indices:
            parts.append(self.encode(self.examples_of([], indices)))
        if not parts:
            raise DataError("no inputs: give image files, a .npy/.npz, latents .npz, or --index into the data set")
        return Latents.cat(parts) if len(parts) > 1 else parts[0]

    def decode(self, latents: Latents, **options) -> Tensor:
        """Integer levels of ``latents`` (:func:`flowspec.core.latents.decode`)."""
        return decode(self.model, latents, **options)

    # -- classes and attribute directions -------------------------------------------------------
    def class_label(self, value, name: str = "class") -> int:
        """The label of a class given by its name (``'dog'``) or its label (``3``, ``'3'``) in the
        labelled data set; ``name`` says where the value came from in error messages."""
        dataset = self.dataset()
        if not dataset.has_labels:
            raise FlowSpecError(f"{name} {value}: data set {dataset.name!r} has no labels; give a folder or .npy of "
                                f"the group's examples instead")
        names = self.class_names()
        text = str(value)
        if text in names:
            return names.index(text)
        if INTEGER.fullmatch(text) and 0 <= int(text) < len(names):
            return int(text)
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise FlowSpecError(f"{name} {text!r}: unknown class; {dataset.name} has classes {shown} "
                            f"(or give a folder / .npy of examples)")

    def class_names(self) -> list[str]:
        dataset = self.dataset()
        return list(dataset.classes or (str(k) for k in range(dataset.num_classes)))

    def group(self, value, name: str = "group") -> Latents:
        """The latents of a group of examples: a folder or file of them, or a class (name or
        label) of the labelled training split."""
        from flowspec.data.images import IMAGE_SUFFIXES

        path = Path(str(value))
        what = name.lstrip("-")
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES | EXAMPLE_SUFFIXES:
            return self.encode(self.read([path], name), what=what)
        label = self.class_label(value, name)
        dataset = self.dataset()
        chosen = dataset.labels_train == label
        if not bool(chosen.any()):
            raise FlowSpecError(f"{name} {str(value)!r}: no training example of this class in {dataset.name}")
        return self.encode(dataset.train[chosen], what=f"class {self.class_names()[label]}")

    def direction(self, toward, away, names: tuple[str, str] = ("toward", "away")) -> Direction:
        """``mean z(toward) - mean z(away)``, each a class, a folder or a file of examples."""
        return attribute_direction(self.group(toward, names[0]), self.group(away, names[1]), str(toward), str(away))

    def manipulate(self, inputs: Iterable = (), *, toward=None, away=None, direction: Direction | None = None,
                   strengths: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0), indices: Sequence[int] = ()) -> Tensor:
        """Integer levels of every input moved along ``direction`` (or toward ``toward`` and away
        from ``away``) at each strength: ``len(inputs) * len(strengths)`` examples, one input's
        strengths after another (strength 0 is the input itself, decoded)."""
        if direction is None:
            if toward is None or away is None:
                raise FlowSpecError("give toward and away (classes or example folders), or a direction")
            direction = self.direction(toward, away)
        else:
            check_latents(self.model, direction)
        return self.decode(manipulate(self.inputs_as_latents(inputs, indices), direction, strengths))
