"""The five tables of the MAF paper's density-estimation benchmark, read from the files the user
supplies in their published preprocessed form (Papamakarios, Pavlakou & Murray 2017,
arXiv:1705.07057, sec. 4.2 and its code's ``datasets/``; the files of zenodo record 1161203), with the
paper's preprocessing and train / validation / test splits reproduced. Nothing is downloaded.

- ``power``: ``power/data.npy`` (N x 8). A ``RandomState(42)`` shuffles the rows; columns 3 and 1 go
  (6 left: active power, voltage, three sub-meterings, time); the same generator then draws the
  noise, in this order: ``U[0, 0.01)`` for the voltage, ``U[0, 0.001)`` for the active power,
  ``U[0, 1)`` for the three sub-meterings (the time gets none), added to the columns. Test: the last
  ``int(0.1 N)`` rows; validation: the last ``int(0.1 N')`` of the rest; each standardized with the
  mean and (population) std of train and validation together. 6 dims.
- ``gas``: the ethylene-CO table with a header row (``Time``, ``Meth``, ``Eth``, 16 sensors) as
  ``gas/ethylene_CO.csv``. The published ``ethylene_CO.pickle`` is a pandas pickle, and reading a
  pickle runs whatever code it names: convert it once, where you trust the file, with
  ``pandas.read_pickle(p).to_csv('ethylene_CO.csv', index=False)``. ``Time``, ``Meth`` and ``Eth`` go;
  then, while some column has more than one column (itself included) correlated with it above 0.98,
  the first such column goes; every column is standardized with the whole table's mean and sample
  std (``ddof=1``, as pandas); test: the last ``int(0.1 N)`` rows, validation the last ``int(0.1 N')``
  of the rest. 8 dims.
- ``hepmass``: ``hepmass/1000_train.csv`` and ``hepmass/1000_test.csv`` (header rows; the class label
  first). Only signal rows (label 1) are kept and the label dropped; the test file's last column goes
  (its layout differs from the train file's); test columns are matched to the train columns by name.
  Both are standardized with the train rows' mean and sample std; a feature goes when the smallest
  value of its standardized train column occurs more than 5 times (the paper's rule for features of
  few distinct values); validation: the last ``int(0.1 N)`` train rows. 21 dims.
- ``miniboone``: ``miniboone/data.npy`` (already cleaned, 43 columns). Test: the last ``int(0.1 N)``
  rows, validation the last ``int(0.1 N')`` of the rest, standardized with train and validation's
  mean and population std. 43 dims.
- ``bsds300``: ``BSDS300/BSDS300.hdf5`` with the ``train``, ``validation`` and ``test`` arrays of 8x8
  monochrome patches without their last pixel, used as they are (63 dims; needs ``h5py``).

``data_dir`` is the folder holding the table's folder (``data/`` of the archive: ``data/power/data.npy``),
the table's own folder, or the file itself. Each loader returns a :class:`Dataset` whose
``validation`` holds the validation split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowspec.data.dataset import Dataset, examples
from flowspec.errors import DataError

#: the file each table is read from, under the table's folder
FILES = {"power": ("power", "data.npy"), "gas": ("gas", "ethylene_CO.csv"),
         "hepmass": ("hepmass", "1000_train.csv"), "miniboone": ("miniboone", "data.npy"),
         "bsds300": ("BSDS300", "BSDS300.hdf5")}
UCI_KINDS = tuple(FILES)


def locate(kind: str, data_dir: str | Path | None, name: str | None = None) -> Path:
    """The file ``name`` (default: the table's main file) of table ``kind`` under ``data_dir``;
    a :class:`DataError` naming the missing file otherwise."""
    folder, default = FILES[kind]
    name = name or default
    if data_dir is None:
        raise DataError(f"--data {kind} needs --data-dir: the folder holding {folder}/{name} (nothing is downloaded)")
    root = Path(data_dir)
    for candidate in (root / folder / name, root / name, root):
        if candidate.is_file() and candidate.name == name:
            return candidate
    if kind == "gas" and name == default and any(p.is_file() for p in (root / folder / "ethylene_CO.pickle",
                                                                      root / "ethylene_CO.pickle")):
        raise DataError(f"{root}: found ethylene_CO.pickle, a pandas pickle, which runs code when read; convert it "
                        f"once where you trust it: python -c \"import pandas as p; p.read_pickle('ethylene_CO.pickle')"
                        f".to_csv('ethylene_CO.csv', index=False)\"")
    raise DataError(f"{root}: no {folder}/{name} (the {kind} table's file, in its published preprocessed form)")


def _npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path}: not a plain .npy array ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected a 2-D numeric array, got shape {list(array.shape)} of {array.dtype}")
    return array.astype(np.float64)


def _csv(path: Path):
    try:
        import pandas
    except ImportError:
        raise DataError(f"{path}: reading this table needs pandas (pip install 'flowspec[uci]')") from None
    try:
        return pandas.read_csv(path, index_col=False)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a CSV table ({error})") from None


def _tail_splits(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test): test the last ``int(0.1 N)`` rows, validation the last
    ``int(0.1 N')`` of the rest."""
    n_test = int(0.1 * len(data))
    test, rest = data[len(data) - n_test:], data[:len(data) - n_test]
    n_validation = int(0.1 * len(rest))
    return rest[:len(rest) - n_validation], rest[len(rest) - n_validation:], test


def _standardized_by_train_and_validation(train, validation, test):
    both = np.vstack([train, validation])
    mean, std = both.mean(0), both.std(0)
    return tuple((part - mean) / std for part in (train, validation, test))


def _dataset(kind: str, path: Path, train, validation, test, **info) -> Dataset:
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if not np.isfinite(part).all():
            row = int(np.argwhere(~np.isfinite(part))[0][0])
            raise DataError(f"{path}: the {name} split has NaN or inf values after preprocessing (row {row}); "
                            f"is this the published {kind} file?")
    data = Dataset(kind, examples(train), examples(test), levels=None, files={"train": str(path), "test": str(path)},
                   info={"preprocessing": "MAF (Papamakarios et al. 2017)", **info})
    data.validation = examples(validation)
    return data


def load_power(data_dir) -> Dataset:
    path = locate("power", data_dir)
    data = _npy(path)
    if data.shape[1] != 8:
        raise DataError(f"{path}: expected the published 8 columns of POWER, got {data.shape[1]}")
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    n = len(data)
    voltage = 0.01 * rng.rand(n, 1)
    active = 0.001 * rng.rand(n, 1)
    meterings = rng.rand(n, 3)
    data = data + np.hstack([active, voltage, meterings, np.zeros((n, 1))])
    return _dataset("power", path, *_standardized_by_train_and_validation(*_tail_splits(data)))


def load_miniboone(data_dir) -> Dataset:
    path = locate("miniboone", data_dir)
    return _dataset("miniboone", path, *_standardized_by_train_and_validation(*_tail_splits(_npy(path))))


def _correlated_counts(table: np.ndarray) -> np.ndarray:
    """Per column: how many columns (itself included) correlate with it above 0.98."""
    return (np.corrcoef(table, rowvar=False) > 0.98).sum(1)


def load_gas(data_dir) -> Dataset:
    path = locate("gas", data_dir)
    frame = _csv(path)
    missing = [name for name in ("Time", "Meth", "Eth") if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; expected the ethylene-CO table (Time, Meth, Eth, sensors)")
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    names = list(frame.columns)
    table = frame.to_numpy(dtype=np.float64)
    counts = _correlated_counts(table)
    while np.any(counts > 1):
        first = int(np.nonzero(counts > 1)[0][0])
        table = np.delete(table, first, axis=1)
        del names[first]
        counts = _correlated_counts(table)
    table = (table - table.mean(0)) / table.std(0, ddof=1)
    return _dataset("gas", path, *_tail_splits(table), features=names)


def load_hepmass(data_dir) -> Dataset:
    train_path = locate("hepmass", data_dir)
    test_path = locate("hepmass", data_dir, "1000_test.csv")
    train, test = _csv(train_path), _csv(test_path)
    train = train[train[train.columns[0]] == 1].drop(columns=train.columns[0])
    test = test[test[test.columns[0]] == 1].drop(columns=test.columns[0])
    test = test.drop(columns=test.columns[-1])
    names = list(train.columns)
    values = train.to_numpy(dtype=np.float64)
    mean, std = values.mean(0), values.std(0, ddof=1)
    values = (values - mean) / std
    keep = []
    for j, name in enumerate(names):
        column = values[:, j]
        if np.count_nonzero(column == column.min()) <= 5:
            keep.append(j)
    absent = [names[j] for j in keep if names[j] not in test.columns]
    if absent:
        raise DataError(f"{test_path}: no column {absent[0]!r}, which {train_path.name} has")
    test_values = (test.reindex(columns=names).to_numpy(dtype=np.float64) - mean) / std
    kept_names = [names[j] for j in keep]
    train_values = values[:, keep]
    n_validation = int(0.1 * len(train_values))
    return _dataset("hepmass", train_path, train_values[:len(train_values) - n_validation],
                    train_values[len(train_values) - n_validation:], test_values[:, keep], features=kept_names)


def load_bsds300(data_dir) -> Dataset:
    path = locate("bsds300", data_dir)
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading BSDS300 needs h5py (pip install 'flowspec[uci]')") from None
    try:
        with h5py.File(path, "r") as file:
            missing = [name for name in ("train", "validation", "test") if name not in file]
            if missing:
                raise DataError(f"{path}: no {missing[0]!r} array; expected train, validation and test")
            parts = [np.asarray(file[name], dtype=np.float64) for name in ("train", "validation", "test")]
    except OSError as error:
        raise DataError(f"{path}: not an HDF5 file ({error})") from None
    if any(part.ndim != 2 or part.shape[1] != 63 for part in parts):
        raise DataError(f"{path}: expected (N, 63) patches, got shapes {[list(p.shape) for p in parts]}")
    return _dataset("bsds300", path, *parts)


LOADERS = {"power": load_power, "gas": load_gas, "hepmass": load_hepmass, "miniboone": load_miniboone,
           "bsds300": load_bsds300}


def load_uci(kind: str, data_dir) -> Dataset:
    """Table ``kind`` (one of :data:`UCI_KINDS`) from ``data_dir``, preprocessed and split as MAF."""
    return LOADERS[kind](data_dir)
