"""CIFAR-10, python version: pickled batches read without running any code.

``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` (optionally under ``cifar-10-batches-py/``) are
pickled dicts: ``b'data'`` a uint8 array ``(N, 3072)`` whose rows are the red, green and blue 32x32
planes in turn, ``b'labels'`` a list of N class indices 0..9, plus ``b'batch_label'`` and
``b'filenames'``. They are read with :class:`~flowspec.data.safe_pickle.PlainDataUnpickler`, so a
crafted batch cannot run code, and checked: integer data within 0..255 of the right shape, labels in
0..9 and one per row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowspec.data.arrays import checked_labels
from flowspec.data.dataset import Dataset, examples, labels
from flowspec.data.safe_pickle import load_plain_pickle
from flowspec.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ROW = 3 * 32 * 32


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """One batch as uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)`` (None if it has none)."""
    path = Path(path)
    batch = load_plain_pickle(path, "CIFAR-10 python batch")
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a pickled {type(batch).__name__}, expected a dict)")
    batch = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 python batch (no b'data'; keys {sorted(map(str, batch))})")
    data = batch["data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: b'data' is a {type(data).__name__}, expected a uint8 array (N, {ROW})")
    if data.dtype.kind not in "iu":
        raise DataError(f"{path}: b'data' has dtype {data.dtype}, expected uint8 pixel values 0..255")
    if data.ndim != 2 or data.shape[1] != ROW:
        raise DataError(f"{path}: b'data' has shape {list(data.shape)}, expected [N, {ROW}]")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise DataError(f"{path}: b'data' values span {data.min()}..{data.max()}, expected 0..255")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32)
    found = batch.get("labels")
    if found is None:
        return images, None
    if isinstance(found, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in found):
            raise DataError(f"{path}: b'labels' holds non-integers; expected class indices 0..9")
        found = np.array(found, dtype=np.int64)
    return images, checked_labels(found, str(path), "b'labels'", count=len(images), classes=len(CIFAR10_CLASSES))


def load_cifar10(folder: str | Path) -> Dataset:
    """CIFAR-10 from ``folder``: ``(N, 3, 32, 32)``, 256 levels, with labels (classes :data:`CIFAR10_CLASSES`)."""
    folder = Path(folder)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
    test_file = folder / "test_batch"
    if not train_files or not test_file.is_file():
        raise DataError(f"{folder}: needs data_batch_1..5 and test_batch (CIFAR-10 python version)")
    train = [read_cifar_batch(path) for path in train_files]
    test_images, test_labels = read_cifar_batch(test_file)
    data = Dataset("cifar10", examples(np.concatenate([images for images, _ in train])), examples(test_images),
                   levels=256, files={"train": str(folder), "test": str(test_file),
                                      "labels_train": str(folder), "labels_test": str(test_file)},
                   info={"labels_hint": "its batches have no b'labels'"})
    if test_labels is not None and all(found is not None for _, found in train):
        data.labels_train = labels(np.concatenate([found for _, found in train]))
        data.labels_test = labels(test_labels)
        data.classes = CIFAR10_CLASSES
    return data
