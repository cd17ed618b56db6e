"""One entry point over every data kind: :func:`load_data` loads, then checks against the spec.

Kinds (the ``--data`` option): ``digits``, ``wine`` and ``moons`` need no files (scikit-learn); ``mnist``,
``cifar10``, ``folder``, ``npz`` and ``csv`` read ``data_dir`` (``--data-dir``), a folder or a file.
Each kind's format is described in its own module (``bundled``, ``mnist``, ``cifar``, ``folder``,
``npz``, ``table``).
"""

from __future__ import annotations

from pathlib import Path

from flowspec.data.bundled import load_digits, load_moons, load_wine
from flowspec.data.cifar import load_cifar10
from flowspec.data.dataset import Dataset, DataSplit, check_condition, check_fits, standardized
from flowspec.data.folder import load_folder
from flowspec.data.mnist import load_mnist, read_idx_images, read_idx_labels
from flowspec.data.npz import load_npz
from flowspec.data.table import load_csv
from flowspec.errors import DataError

DATA_KINDS = ("digits", "mnist", "cifar10", "folder", "npz", "csv", "wine", "moons")
BUNDLED_KINDS = ("digits", "wine", "moons")

__all__ = ["BUNDLED_KINDS", "DATA_KINDS", "DataSplit", "Dataset", "check_condition", "check_fits", "load_cifar10",
           "load_csv", "load_data", "load_digits", "load_folder", "load_mnist", "load_moons", "load_npz",
           "load_wine", "read_idx_images", "read_idx_labels"]


def load_data(kind: str, data_dir: str | Path | None, shape: tuple[int, ...], levels: int | None, *,
              classes: int | None = None, context_dim: int | None = None, standardize: bool = False,
              features: list[str] | None = None, context_columns: list[str] | tuple = (),
              label_column: str | None = None) -> Dataset:
    """Load data set ``kind`` and check it against the spec.

    - ``shape``, ``levels``: the spec's input; ``levels`` None means continuous data (any finite values).
    - ``classes``: the spec is class-conditional; every example needs a label in ``0 .. classes-1``.
    - ``context_dim``: the spec is context-conditional; every example needs a context vector of that width.
    - ``standardize``: scale continuous data per feature to zero mean, unit std (train statistics).
    - ``features``, ``context_columns``, ``label_column``: the columns of a ``csv`` table.
    """
    if kind not in DATA_KINDS:
        raise DataError(f"unknown data set {kind!r}; known: {', '.join(DATA_KINDS)}")
    if kind not in BUNDLED_KINDS and data_dir is None:
        raise DataError(f"--data {kind} needs --data-dir (nothing is downloaded)")
    if kind != "csv" and (features or context_columns or label_column):
        raise DataError(f"--data {kind}: feature, context and label columns apply to csv tables only")
    if kind == "digits":
        data = load_digits()
    elif kind == "wine":
        data = load_wine()
    elif kind == "moons":
        data = load_moons()
    elif kind == "mnist":
        data = load_mnist(data_dir)
    elif kind == "cifar10":
        data = load_cifar10(data_dir)
    elif kind == "folder":
        data = load_folder(data_dir, shape[0] if len(shape) == 3 else 1)
    elif kind == "npz":
        data = load_npz(data_dir, shape, levels)
    else:
        data = load_csv(data_dir, features, context_columns, label_column, levels)
    check_fits(data, shape, levels)
    if standardize:
        if levels is not None:
            raise DataError(f"{data.file('train')}: standardisation applies to continuous data; the spec models "
                            f"{levels} discrete levels")
        data = standardized(data)
    check_condition(data, classes=classes, context_dim=context_dim)
    return data
