"""The result of every loader: examples with optional labels and contexts, and the checks against a spec.

A :class:`Dataset` holds train and test examples ``(N, *shape)`` as float32 tensors, optionally with
integer class labels ``(N,)`` (int64, ``0 .. classes-1``) and context vectors ``(N, C)`` (float32)
aligned row by row. ``levels`` is the number of discrete values (examples are integers
``0 .. levels-1``), or ``None`` for continuous (real-valued) data. ``files`` names the file each part
came from, so that an error about labels names the labels file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from flowspec.errors import DataError

SPLIT_SEED = 1234

# Spec fields named in error messages (the spec sections that ask for labels, contexts or real values).
FIELD_SHAPE = "input.shape"
FIELD_LEVELS = "input.levels"
FIELD_CONTINUOUS = "input.data: continuous"
FIELD_CLASSES = "condition.classes"
FIELD_CONTEXT = "condition.dim"

PARTS = ("train", "test", "labels_train", "labels_test", "context_train", "context_test")


@dataclass
class Dataset:
    """Train and test examples with their optional labels and contexts (rows aligned).

    - ``train``, ``test``: float32 ``(N, *shape)``; integers ``0 .. levels-1`` unless ``levels`` is None
      (continuous data).
    - ``labels_train``, ``labels_test``: int64 ``(N,)`` class indices, or None.
    - ``context_train``, ``context_test``: float32 ``(N, C)`` context vectors, or None.
    - ``classes``: class names by index (``classes[k]`` is the name of label ``k``), or None.
    - ``files``: the file each part was read from (keys as in :data:`PARTS`, or ``"data"`` for all).
    - ``info``: facts about the loading (feature names, standardisation mean and std, ...).
    - ``validation``: float32 examples of a validation split where the data set defines one (the UCI
      tables of :mod:`flowspec.data.uci`), else None.
    """

    name: str
    train: Tensor
    test: Tensor
    levels: int | None = 256
    labels_train: Tensor | None = None
    labels_test: Tensor | None = None
    context_train: Tensor | None = None
    context_test: Tensor | None = None
    classes: tuple[str, ...] | None = None
    files: dict[str, str] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    validation: Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def continuous(self) -> bool:
        return self.levels is None

    @property
    def has_labels(self) -> bool:
        return self.labels_train is not None and self.labels_test is not None

    @property
    def has_context(self) -> bool:
        return self.context_train is not None and self.context_test is not None

    @property
    def num_classes(self) -> int | None:
        """The number of named classes, else one more than the largest label, else None."""
        if self.classes is not None:
            return len(self.classes)
        if not self.has_labels:
            return None
        return int(max(self.labels_train.max().item(), self.labels_test.max().item())) + 1

    @property
    def context_dim(self) -> int | None:
        return int(self.context_train.shape[1]) if self.has_context else None

    def summary(self) -> str:
        """One line: ``digits: 1497 train / 300 test, shape [1, 8, 8], 17 levels, labels (10 classes)``."""
        kind = "continuous" if self.continuous else f"{self.levels} levels"
        text = f"{self.name}: {len(self.train)} train / {len(self.test)} test, shape {list(self.shape)}, {kind}"
        if self.has_labels:
            text += f", labels ({self.num_classes} classes)"
        if self.has_context:
            text += f", context ({self.context_dim})"
        return text

    def file(self, part: str) -> str:
        """The file ``part`` came from (the data set's name where no file is known)."""
        return self.files.get(part) or self.files.get("data") or self.name

    def take(self, n_train: int, n_test: int) -> "Dataset":
        """The first ``n_train`` train and ``n_test`` test rows, labels and contexts kept aligned."""

        def cut(tensor, n):
            return None if tensor is None else tensor[:n]

        return replace(self, train=self.train[:n_train], test=self.test[:n_test],
                       labels_train=cut(self.labels_train, n_train), labels_test=cut(self.labels_test, n_test),
                       context_train=cut(self.context_train, n_train), context_test=cut(self.context_test, n_test))

    def labels_as_context(self) -> "Dataset":
        """The labels as one-hot context vectors ``(N, classes)``, for vector-conditioned models."""
        if not self.has_labels:
            raise DataError(f"{self.file('labels_train')}: data set {self.name!r} has no labels to one-hot encode")
        k = self.num_classes

        def one_hot(labels):
            return torch.nn.functional.one_hot(labels, k).to(torch.float32)

        return replace(self, context_train=one_hot(self.labels_train), context_test=one_hot(self.labels_test))

    def unstandardize(self, x: Tensor) -> Tensor:
        """Map standardised values back to the data's units: ``x · std + mean`` (identity if not standardised)."""
        stats = self.info.get("standardize")
        if not stats:
            return x
        mean = torch.tensor(stats["mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(stats["std"], dtype=x.dtype, device=x.device)
        return x * std + mean


DataSplit = Dataset
"""The former name of :class:`Dataset`; ``DataSplit(name, train, test, levels=...)`` still works."""


def split_indices(n: int, test_fraction: float = 0.1, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A fixed seeded permutation cut into train and test row indices (at least one test row)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def examples(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def labels(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(array, dtype=np.int64))


def discrete_levels(arrays: list[np.ndarray], levels: int | None) -> int | None:
    """``levels`` (default 256) when every value is an integer, else None (continuous data)."""
    integral = all(a.dtype.kind in "biu" or np.array_equal(a, np.floor(a)) for a in arrays)
    return (levels or 256) if integral else None


def standardized(data: Dataset, context: bool = False) -> Dataset:
    """Continuous data scaled per feature to zero mean and unit std (statistics of the train split).

    ``x' = (x - mean) / std``; a constant feature keeps ``std = 1``. The mean and std go to
    ``info["standardize"]`` (and ``info["standardize_context"]`` with ``context=True``), so samples can be
    mapped back with :meth:`Dataset.unstandardize`. The log-density changes by ``-Σ log std``.
    """
    if not data.continuous:
        raise DataError(f"{data.file('train')}: standardisation applies to continuous data "
                        f"({FIELD_CONTINUOUS}); data set {data.name!r} has {data.levels} levels")

    def stats(tensor: Tensor) -> tuple[Tensor, Tensor]:
        flat = tensor.reshape(len(tensor), -1).to(torch.float64)
        mean, std = flat.mean(0), flat.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return mean.reshape(tensor.shape[1:]), std.reshape(tensor.shape[1:])

    def scale(tensor: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        return ((tensor.to(torch.float64) - mean) / std).to(torch.float32)

    mean, std = stats(data.train)
    info = dict(data.info, standardize={"mean": mean.tolist(), "std": std.tolist()})
    out = replace(data, train=scale(data.train, mean, std), test=scale(data.test, mean, std), info=info)
    if context and data.has_context:
        c_mean, c_std = stats(data.context_train)
        out = replace(out, context_train=scale(data.context_train, c_mean, c_std),
                      context_test=scale(data.context_test, c_mean, c_std),
                      info=dict(out.info, standardize_context={"mean": c_mean.tolist(), "std": c_std.tolist()}))
    return out


def check_fits(data: Dataset, shape: tuple[int, ...], levels: int | None) -> None:
    """Raise :class:`DataError` unless every example has ``shape`` and fits ``levels``.

    ``levels`` an int: values are integers ``0 .. levels-1``. ``levels`` None: the spec models continuous
    data, and every value must be finite.
    """
    shape = tuple(shape)
    for part in ("train", "test"):
        tensor = getattr(data, part)
        where = f"{data.file(part)}: data set {data.name!r}"
        if tuple(tensor.shape[1:]) != shape:
            raise DataError(f"{where}: {part} examples have shape {list(tensor.shape[1:])}, "
                            f"the spec's {FIELD_SHAPE} is {list(shape)}")
        if len(tensor) == 0:
            raise DataError(f"{where}: the {part} split is empty")
        bad = ~torch.isfinite(tensor)
        if bad.any():
            row, column = (int(i) for i in bad.reshape(len(tensor), -1).nonzero()[0])
            column = f", column {column}" if tensor.dim() == 2 else ""  # a table's column; not an image's pixel
            raise DataError(f"{where}: {int(bad.sum())} NaN or inf values in the {part} examples "
                            f"(first in row {row}{column}); data must be finite")
        if levels is None:
            continue
        if data.continuous:
            raise DataError(f"{where}: non-integer (continuous) values, the spec models discrete data "
                            f"({FIELD_LEVELS}: {levels}, integers 0..{levels - 1}); for real-valued data "
                            f"declare {FIELD_CONTINUOUS}")
        low, high = tensor.min().item(), tensor.max().item()
        if low < 0 or high > levels - 1 or not torch.equal(tensor, tensor.floor()):
            raise DataError(f"{where}: {part} values span {low:g}..{high:g}, the spec's "
                            f"{FIELD_LEVELS} is {levels} (integers 0..{levels - 1})"
                            + (f"; set {FIELD_LEVELS}: {data.levels}" if data.levels != levels else ""))


def check_column_types(data: Dataset, columns) -> None:
    """Raise :class:`DataError` naming the file, the row and the column of the first value outside its
    column type's domain (``columns``: the spec's ``input.columns``, see :mod:`flowspec.columns`)."""
    import numpy as np

    for entry in columns:
        index = list(entry.columns)
        for part in ("train", "test"):
            values = getattr(data, part).reshape(len(getattr(data, part)), -1)[:, index].double().numpy()
            bad = ~entry.valid(values)
            if bad.any():
                row, column = (int(i[0]) for i in np.nonzero(bad))
                names = data.info.get("features") if isinstance(data.info, dict) else None
                name = f" {names[index[column]]!r}" if names and len(names) > index[column] else ""
                raise DataError(f"{data.file(part)}: {part} row {row}, column {index[column]}{name}: "
                                f"{entry.problem(float(values[row, column]))} (input.columns)")


def _aligned(data: Dataset, part: str, rows, what: str):
    """``data``'s ``part`` (labels or contexts), which must have one entry per example in ``rows``."""
    tensor = getattr(data, part)
    if len(tensor) != len(rows):
        raise DataError(f"{data.file(part)}: {len(tensor)} {what} in {part} for {len(rows)} examples")
    return tensor


def check_condition(data: Dataset, classes: int | None = None, context_dim: int | None = None) -> None:
    """Raise :class:`DataError` unless ``data`` carries what a conditional spec needs.

    ``classes``: every example has a label in ``0 .. classes-1``. ``context_dim``: every example has a
    finite context vector of that width.
    """
    if classes is not None:
        if not data.has_labels:
            raise DataError(f"{data.file('labels_train')}: data set {data.name!r} has no labels; the spec is "
                            f"class-conditional ({FIELD_CLASSES}: {classes})"
                            + _hint(data.info.get("labels_hint")))
        for part, rows in (("labels_train", data.train), ("labels_test", data.test)):
            tensor = _aligned(data, part, rows, "labels")
            if not len(tensor):
                continue
            low, high = int(tensor.min()), int(tensor.max())
            if low < 0 or high >= classes:
                value = low if low < 0 else high
                raise DataError(f"{data.file(part)}: label {value} in {part} is outside 0..{classes - 1} "
                                f"({FIELD_CLASSES}: {classes})")
    if context_dim is not None:
        if not data.has_context:
            raise DataError(f"{data.file('context_train')}: data set {data.name!r} has no context vectors; the "
                            f"spec is context-conditional ({FIELD_CONTEXT}: {context_dim})"
                            + _hint(data.info.get("context_hint")))
        for part, rows in (("context_train", data.train), ("context_test", data.test)):
            tensor = _aligned(data, part, rows, "context rows")
            if tensor.ndim != 2 or tensor.shape[1] != context_dim:
                raise DataError(f"{data.file(part)}: {part} has shape {list(tensor.shape)}, the spec's "
                                f"{FIELD_CONTEXT} is {context_dim} (expected [N, {context_dim}])")
            if not torch.isfinite(tensor).all():
                raise DataError(f"{data.file(part)}: NaN or inf values in {part}; contexts must be finite")


def _hint(text: str | None) -> str:
    return f" ({text})" if text else ""
