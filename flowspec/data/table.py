"""CSV tables: named feature columns, context columns and an optional label column.

A table is ``FILE.csv`` (split 90/10 with a fixed seed) or a folder with ``train.csv`` and ``test.csv``.
The first row names the columns. ``features`` lists the example columns (default: every column that is
neither a context nor the label), ``context`` the context columns (their values form the context
vector, in the order given), ``label`` the class column: integers ``0, 1, ...``, or names, numbered in
sorted order (:attr:`Dataset.classes` keeps the mapping; the test file uses the train file's). Every
feature and context cell must be a finite number; a bad cell is reported as ``file:line: column 'name':
...``. Read with the standard library's ``csv`` module.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from flowspec.data.dataset import Dataset, discrete_levels, examples, labels, split_indices
from flowspec.errors import DataError


MAX_COLUMNS = 10_000  # fields of the header and of every row
MAX_LABEL = 2 ** 31 - 1  # an integer label is a class index


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-blank rows (with their line numbers), each row as wide as the header
    and no row wider than :data:`MAX_COLUMNS` (checked as it is read, so a wide file costs one row)."""
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is not None and len(header) > MAX_COLUMNS:
                raise DataError(f"{path}:1: the header has {len(header):,} columns; a table has at most "
                                f"{MAX_COLUMNS:,}")
            rows = []
            for row in reader:
                if len(row) != len(header or ()) and any(cell.strip() for cell in row):
                    raise DataError(f"{path}:{reader.line_num}: {len(row):,} fields, the header has {len(header):,}")
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, row))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a CSV table ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if not header:
        raise DataError(f"{path}: empty; expected a header row naming the columns")
    header = [name.strip() for name in header]
    twice = _named_twice(header)
    if twice:
        raise DataError(f"{path}:1: columns named twice: {twice}")
    if not rows:
        raise DataError(f"{path}: no rows after the header")
    return header, rows


def _named_twice(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (one pass)."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in names:
        (twice if name in seen else seen).add(name)
    return sorted(twice)


def _numbers(path: Path, rows, header: list[str], columns: list[str], types=None) -> np.ndarray:
    """The cells of ``columns`` as float64; with ``types`` (one column config per column, see
    :mod:`flowspec.columns`) each cell must also lie in its column type's domain."""
    position = {name: i for i, name in enumerate(header)}
    index = [position[name] for name in columns]
    out = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        for c, i in enumerate(index):
            text = row[i].strip()
            try:
                value = float(text)
            except ValueError:
                raise DataError(f"{path}:{line}: column {header[i]!r}: {text!r} is not a number") from None
            if not math.isfinite(value):
                raise DataError(f"{path}:{line}: column {header[i]!r}: {text} is not a finite number; "
                                f"data must be finite")
            if types is not None and not types[c].valid(np.float64(value)):
                raise DataError(f"{path}:{line}: column {header[i]!r} (feature {c}): {types[c].problem(value)} "
                                f"(input.columns)")
            out[r, c] = value
    return out


def _labels(path: Path, rows, header: list[str], column: str, classes: list[str] | None):
    i = header.index(column)
    texts = [(line, row[i].strip()) for line, row in rows]
    if classes is None:
        try:
            values = [int(text) for _, text in texts]
        except ValueError:
            classes = sorted({text for _, text in texts})
        else:
            bad = next(((line, v) for (line, _), v in zip(texts, values) if not 0 <= v <= MAX_LABEL), None)
            if bad:
                why = "is negative" if bad[1] < 0 else f"is larger than {MAX_LABEL:,}"
                raise DataError(f"{path}:{bad[0]}: column {column!r}: label {bad[1]} {why}; "
                                f"labels are class indices 0, 1, ... or class names")
            return np.array(values, dtype=np.int64), None
    number = {name: k for k, name in enumerate(classes)}
    found = []
    for line, text in texts:
        if text not in number:
            shown = classes if len(classes) <= 20 else [*classes[:20], "..."]
            raise DataError(f"{path}:{line}: column {column!r}: class {text[:80]!r} is not among the train classes "
                            f"{shown}")
        found.append(number[text])
    return np.array(found, dtype=np.int64), classes


def _columns(path: Path, header: list[str], features, context, label) -> list[str]:
    for option, names in (("--features", features or []), ("--context-columns", context)):
        twice = _named_twice(list(names))
        if twice:
            raise DataError(f"{option}: columns named twice: {twice}")
    wanted = list(features or []) + list(context) + ([label] if label else [])
    known = set(header)
    missing = [name for name in wanted if name not in known]
    if missing:
        shown = header if len(header) <= 20 else [*header[:20], "..."]
        raise DataError(f"{path}: no column {missing[0][:80]!r}; the header names {shown}")
    if features is None:
        context_names = set(context)
        features = [name for name in header if name not in context_names and name != label]
    overlap = sorted(set(features) & (set(context) | {label}))
    if overlap:
        raise DataError(f"{path}: columns {overlap} are both features and context or label")
    if not features:
        raise DataError(f"{path}: no feature columns left (header {header})")
    return list(features)


def read_table(path: str | Path, features=None, context=(), label: str | None = None, classes=None,
               types=None):
    """One CSV file as ``(x, y, c, classes, feature_names)`` numpy arrays (``y``, ``c`` None if not
    asked); ``types``: the spec's ``input.columns``, which every feature cell must fit."""
    path = Path(path)
    header, rows = _read_rows(path)
    features = _columns(path, header, features, tuple(context), label)
    if types is not None:
        from flowspec.columns import column_types

        if len(features) < max((entry.columns.stop for entry in types), default=0):
            raise DataError(f"{path}: {len(features)} feature columns, but input.columns types column "
                            f"{max(entry.columns.stop for entry in types) - 1}")
        types = column_types(types, len(features))
    x = _numbers(path, rows, header, features, types)
    c = _numbers(path, rows, header, list(context)) if context else None
    y = None
    if label:
        y, classes = _labels(path, rows, header, label, classes)
    return x, y, c, classes, features


def load_csv(path: str | Path, features: list[str] | None = None, context: list[str] | tuple = (),
             label: str | None = None, levels: int | None = None, types=None) -> Dataset:
    """A CSV table (see the module) as a :class:`Dataset` of vectors ``(N, len(features))``; with
    ``types`` (the spec's ``input.columns``) a cell outside its column's type is one located error."""
    path = Path(path)
    context = tuple(context or ())
    if path.is_dir():
        train_file, test_file = path / "train.csv", path / "test.csv"
        if not train_file.is_file() or not test_file.is_file():
            raise DataError(f"{path}: a folder of CSV data needs train.csv and test.csv")
        x, y, c, classes, names = read_table(train_file, features, context, label, types=types)
        x_test, y_test, c_test, _, _ = read_table(test_file, names, context, label, classes, types=types)
        files = {"train": train_file, "test": test_file}
    elif path.is_file():
        everything, all_y, all_c, classes, names = read_table(path, features, context, label, types=types)
        if len(everything) < 2:
            raise DataError(f"{path}: needs at least 2 rows to split into train and test")
        train_rows, test_rows = split_indices(len(everything))
        x, x_test = everything[train_rows], everything[test_rows]
        y, y_test = (None, None) if all_y is None else (all_y[train_rows], all_y[test_rows])
        c, c_test = (None, None) if all_c is None else (all_c[train_rows], all_c[test_rows])
        files = {"train": path, "test": path}
    else:
        raise DataError(f"{path}: no such file or folder")
    files = {key: str(value) for key, value in files.items()}
    files.update(labels_train=files["train"], labels_test=files["test"],
                 context_train=files["train"], context_test=files["test"])
    data = Dataset(f"csv:{path.name}", examples(x), examples(x_test), levels=discrete_levels([x, x_test], levels),
                   files=files, info={"features": names, "context": list(context), "label": label,
                                      "labels_hint": "name its label column",
                                      "context_hint": "name its context columns"})
    if y is not None:
        data.labels_train, data.labels_test = labels(y), labels(y_test)
        data.classes = tuple(classes) if classes is not None else None
    if c is not None:
        data.context_train, data.context_test = examples(c), examples(c_test)
    return data
