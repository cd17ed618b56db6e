"""Numpy files: ``.npz`` archives with examples, labels and contexts, or one ``.npy`` array.

``.npz`` array names:

- examples: ``x`` (split 90/10 with a fixed seed), or ``x_train`` and ``x_test``, or ``train`` and
  ``test``, or a single array of any name (split 90/10);
- labels (optional): ``y``, or ``y_train`` and ``y_test``: integer class indices ``(N,)``;
- contexts (optional): ``c``, or ``c_train`` and ``c_test``: real vectors ``(N, C)`` (or ``(N,)``).

Layouts of examples: ``(N, *shape)``; ``(N, H, W)`` is read as one channel and ``(N, H, W, C)`` is moved
to channels first when that fits the spec's shape; ``(N,)`` is read as ``(N, 1)`` for a shape ``[1]``.
Files are read with ``allow_pickle=False``: an array of Python objects is refused, as are complex,
string and 0-d arrays, NaN and inf. Integer-valued examples are discrete (``levels`` or 256), others
are continuous (``levels`` None).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from flowspec.data.arrays import checked_context, checked_examples, checked_labels
from flowspec.data.dataset import Dataset, discrete_levels, examples, labels, split_indices
from flowspec.errors import DataError

SPLIT_PAIRS = (("x_train", "x_test"), ("train", "test"))
KNOWN = {"x", "y", "c", "x_train", "x_test", "train", "test", "y_train", "y_test", "c_train", "c_test"}
NPZ_HINT = "add y (or y_train and y_test) to the .npz"
NPZ_CONTEXT_HINT = "add c (or c_train and c_test) to the .npz"


def _resolve(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.npz")) + sorted(path.glob("*.npy"))
        if len(found) != 1:
            raise DataError(f"{path}: expected one .npz or .npy file, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` (or the one of a ``.npy``, named ``x``), read without unpickling."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):
            raise DataError(f"{path}: holds pickled Python objects; refused (only numeric arrays are read)") from None
        raise DataError(f"{path}: not a readable .npy/.npz ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npy/.npz ({type(error).__name__}: {error})") from None
    if isinstance(loaded, np.ndarray):
        return {"x": loaded}
    arrays = {}
    with loaded:
        for name in loaded.files:
            try:
                arrays[name] = loaded[name]
            except ValueError as error:
                if "pickle" in str(error):
                    raise DataError(f"{path}: array {name!r} holds pickled Python objects; refused "
                                    f"(only numeric arrays are read)") from None
                raise DataError(f"{path}: array {name!r} is unreadable ({error})") from None
            except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
                raise DataError(f"{path}: array {name!r} is unreadable ({type(error).__name__}: {error})") from None
    return arrays


def _layout(array: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    if shape is None or tuple(array.shape[1:]) == tuple(shape):
        return array
    if array.ndim == 1 and tuple(shape) == (1,):
        return array[:, None]
    if array.ndim == 3 and len(shape) == 3 and shape[0] == 1 and tuple(array.shape[1:]) == tuple(shape[1:]):
        return array[:, None]
    if array.ndim == 4 and len(shape) == 3 and tuple(array.shape[1:]) == (shape[1], shape[2], shape[0]):
        return array.transpose(0, 3, 1, 2)
    return array


def load_npz(path: str | Path, shape: tuple[int, ...] | None = None, levels: int | None = None) -> Dataset:
    """Examples (with labels ``y`` and contexts ``c`` when present) from a ``.npz`` or ``.npy`` file."""
    path = _resolve(Path(path))
    arrays = read_arrays(path)
    file = str(path)
    unknown = sorted(set(arrays) - KNOWN)
    if len(arrays) == 1 and unknown:
        arrays = {"x": arrays[unknown[0]]}
        unknown = []
    if unknown:
        raise DataError(f"{path}: arrays {unknown} are not understood; expected x (or x_train and x_test, or "
                        f"train and test), optional y (labels) and c (contexts), with _train/_test to match")
    pair = next((p for p in SPLIT_PAIRS if set(p) <= set(arrays)), None)
    parts: dict[str, np.ndarray] = {}
    if pair is not None:
        for part, name in zip(("train", "test"), pair):
            parts[part] = _layout(checked_examples(arrays[name], file, name), shape)
            if f"y_{part}" in arrays:
                parts[f"labels_{part}"] = checked_labels(arrays[f"y_{part}"], file, f"y_{part}", len(parts[part]))
            if f"c_{part}" in arrays:
                parts[f"context_{part}"] = checked_context(arrays[f"c_{part}"], file, f"c_{part}", len(parts[part]))
        stray = sorted({"x", "y", "c"} & set(arrays))
        halves = [(f"{k}_train" in arrays) != (f"{k}_test" in arrays) for k in "yc"]
        if stray or any(halves):
            raise DataError(f"{path}: mixes split arrays ({pair[0]}, {pair[1]}) with {stray or 'half of a pair'}; "
                            f"give y_train and y_test (c_train and c_test) with a split, or x, y, c without")
    else:
        if "x" not in arrays:
            raise DataError(f"{path}: arrays {sorted(arrays)}; expected x (or x_train and x_test, or train and test)")
        x = _layout(checked_examples(arrays["x"], file, "x"), shape)
        train_rows, test_rows = split_indices(len(x))
        parts["train"], parts["test"] = x[train_rows], x[test_rows]
        if "y" in arrays:
            y = checked_labels(arrays["y"], file, "y", len(x))
            parts["labels_train"], parts["labels_test"] = y[train_rows], y[test_rows]
        if "c" in arrays:
            c = checked_context(arrays["c"], file, "c", len(x))
            parts["context_train"], parts["context_test"] = c[train_rows], c[test_rows]
        stray = sorted(set(arrays) - {"x", "y", "c"})
        if stray:
            raise DataError(f"{path}: mixes x with split arrays {stray}; use x, y, c or the _train/_test pairs")
    found = discrete_levels([parts["train"], parts["test"]], levels)
    data = Dataset(f"npz:{path.name}", examples(parts["train"]), examples(parts["test"]), levels=found,
                   files={"data": file}, info={"labels_hint": NPZ_HINT, "context_hint": NPZ_CONTEXT_HINT})
    if "labels_train" in parts:
        data.labels_train, data.labels_test = labels(parts["labels_train"]), labels(parts["labels_test"])
    if "context_train" in parts:
        data.context_train, data.context_test = examples(parts["context_train"]), examples(parts["context_test"])
    return data
