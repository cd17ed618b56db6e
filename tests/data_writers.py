"""Writers of small data files in the real formats, for the data tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx_images(path, images: np.ndarray, compress: bool = False) -> Path:
    """IDX3: magic 2051, count, rows, columns (big-endian uint32), then uint8 pixels."""
    count, rows, cols = images.shape
    payload = struct.pack(">IIII", 2051, count, rows, cols) + images.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as stream:
        stream.write(payload)
    return Path(path)


def write_idx_labels(path, labels: np.ndarray, compress: bool = False) -> Path:
    """IDX1: magic 2049, count (big-endian uint32), then one uint8 per label."""
    payload = struct.pack(">II", 2049, len(labels)) + np.asarray(labels).astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as stream:
        stream.write(payload)
    return Path(path)


def write_mnist(folder: Path, train: np.ndarray, test: np.ndarray, train_labels=None, test_labels=None,
                compress: bool = True) -> Path:
    suffix = ".gz" if compress else ""
    write_idx_images(folder / f"train-images-idx3-ubyte{suffix}", train, compress)
    write_idx_images(folder / f"t10k-images-idx3-ubyte{suffix}", test, compress)
    if train_labels is not None:
        write_idx_labels(folder / f"train-labels-idx1-ubyte{suffix}", train_labels, compress)
        write_idx_labels(folder / f"t10k-labels-idx1-ubyte{suffix}", test_labels, compress)
    return folder


def cifar_batch(data, labels, name: bytes = b"training batch 1 of 5") -> dict:
    """A batch dict as the python version has it (bytes keys; labels a list of ints)."""
    return {b"batch_label": name, b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}


def write_pickle(path, obj, protocol: int = 2) -> Path:
    """Protocol 2, as the real batches (written by Python 2's cPickle) use."""
    with open(path, "wb") as stream:
        pickle.dump(obj, stream, protocol=protocol)
    return Path(path)


def write_cifar(folder: Path, batches: dict[str, tuple[np.ndarray, list[int]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in batches.items():
        write_pickle(folder / name, cifar_batch(data, labels, name.encode()))
    return folder


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array if array.dtype == np.uint16 else array.astype(np.uint8)).save(path)
