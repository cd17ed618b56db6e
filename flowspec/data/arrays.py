"""Checks on raw arrays before they become examples, labels or contexts.

Every loader hands its arrays to :func:`checked_examples`, :func:`checked_labels` or
:func:`checked_context`; each refuses, with one line naming the file and the array (or column), what
is not a finite real number array of the right rank: 0-d arrays, complex numbers, strings, objects,
NaN and inf, labels that are not non-negative integers.
"""

from __future__ import annotations

import numpy as np

from flowspec.errors import DataError

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def _kind_problem(array: np.ndarray) -> str | None:
    kind = array.dtype.kind
    if kind == "c":
        return f"complex numbers (dtype {array.dtype}); expected real numbers"
    if kind in "US":
        return f"strings (dtype {array.dtype}); expected numbers"
    if kind == "O":
        return "Python objects; expected a numeric array"
    if kind not in NUMERIC_KINDS:
        return f"dtype {array.dtype}; expected integers or floats"
    return None


def _numeric(array, file: str, name: str, min_ndim: int) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise DataError(f"{file}: {name} is a {type(array).__name__}, expected a numeric array")
    problem = _kind_problem(array)
    if problem:
        raise DataError(f"{file}: {name} holds {problem}")
    if array.ndim == 0:
        raise DataError(f"{file}: {name} is a 0-d array (a single value); expected one row per example")
    if array.ndim < min_ndim:
        raise DataError(f"{file}: {name} has shape {list(array.shape)}; expected at least {min_ndim} dimensions")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = np.argwhere(bad)[0]
            column = f", column {int(first[1])}" if array.ndim == 2 else ""  # a table's column
            raise DataError(f"{file}: {name} holds {int(bad.sum())} NaN or inf values (first in row {int(first[0])}"
                            f"{column}); data must be finite")
    return array


def checked_examples(array, file: str, name: str = "x") -> np.ndarray:
    """A finite real array ``(N, ...)`` (bool, integer or float)."""
    return _numeric(array, file, name, 1)


def checked_labels(array, file: str, name: str = "y", count: int | None = None,
                   classes: int | None = None) -> np.ndarray:
    """Integer class labels ``(N,)`` in ``0 .. classes-1`` (or ``>= 0`` when ``classes`` is None)."""
    array = _numeric(array, file, name, 1)
    if array.ndim != 1:
        raise DataError(f"{file}: {name} has shape {list(array.shape)}; labels are one integer per example (N,)")
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.floor(array)):
            raise DataError(f"{file}: {name} holds non-integer values; labels are class indices 0, 1, ...")
    elif array.dtype.kind == "b":
        raise DataError(f"{file}: {name} holds booleans; labels are integer class indices 0, 1, ...")
    if count is not None and len(array) != count:
        raise DataError(f"{file}: {name} has {len(array)} labels for {count} examples")
    if len(array):
        low, high = array.min(), array.max()
        if low < 0:
            raise DataError(f"{file}: {name} holds label {low:g}; labels are class indices 0, 1, ...")
        if classes is not None and high >= classes:
            raise DataError(f"{file}: {name} holds label {high:g}, outside 0..{classes - 1} ({classes} classes)")
    return array.astype(np.int64)


def checked_context(array, file: str, name: str = "c", count: int | None = None) -> np.ndarray:
    """Finite real context vectors ``(N, C)``; a 1-d array ``(N,)`` is one context value per example."""
    array = _numeric(array, file, name, 1)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(f"{file}: {name} has shape {list(array.shape)}; contexts are vectors (N, C)")
    if count is not None and len(array) != count:
        raise DataError(f"{file}: {name} has {len(array)} context rows for {count} examples")
    return array.astype(np.float32)
