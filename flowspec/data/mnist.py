"""MNIST in its IDX files: images and labels, plain or gzip-compressed.

``train-images-idx3-ubyte`` / ``t10k-images-idx3-ubyte``: magic 2051 (``0x00000803``: unsigned bytes,
3 dimensions), then big-endian uint32 count, rows, columns, then the pixels (0..255).
``train-labels-idx1-ubyte`` / ``t10k-labels-idx1-ubyte``: magic 2049, count, then one byte per label
(0..9). Each may end in ``.gz``. The label files are optional; when present they must match the
image counts.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from flowspec.data.dataset import Dataset, examples, labels
from flowspec.errors import DataError

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
MNIST_CLASSES = tuple(str(k) for k in range(10))
TRAIN_IMAGES = ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]
TEST_IMAGES = ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]
TRAIN_LABELS = ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]
TEST_LABELS = ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for ``.gz``; a corrupt or truncated archive is a :class:`DataError`."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except EOFError:
        raise DataError(f"{path}: truncated gzip archive (it ends before its end-of-stream marker)") from None
    except (OSError, zlib.error) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        kind = "corrupt gzip archive" if path.suffix == ".gz" else "cannot read"
        raise DataError(f"{path}: {kind} ({reason})") from None


def find_file(folder: Path, names: list[str], required: bool = True) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    if required:
        raise DataError(f"{folder}: none of {', '.join(names)} (or .gz) found")
    return None


def _magic(path: Path, raw: bytes, expected: int) -> None:
    magic = struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None
    if magic != expected:
        kind = "images" if expected == IMAGE_MAGIC else "labels"
        other = {IMAGE_MAGIC: " — this is an image file", LABEL_MAGIC: " — this is a label file"}.get(magic, "")
        raise DataError(f"{path}: IDX magic {magic}, expected {expected} ({kind}){other}")


def read_idx_images(path: str | Path) -> np.ndarray:
    """An IDX3 image file as uint8 ``(N, 1, rows, cols)``."""
    path = Path(path)
    raw = read_bytes(path)
    _magic(path, raw, IMAGE_MAGIC)
    if len(raw) < 16:
        raise DataError(f"{path}: too short for an IDX image file")
    count, rows, cols = struct.unpack(">III", raw[4:16])
    data = raw[16:]
    if len(data) != count * rows * cols:
        raise DataError(f"{path}: {len(data)} bytes of pixels, header says {count}x{rows}x{cols}")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, 1, rows, cols)


def read_idx_labels(path: str | Path, classes: int = 10) -> np.ndarray:
    """An IDX1 label file as int64 ``(N,)``, each in ``0 .. classes-1``."""
    path = Path(path)
    raw = read_bytes(path)
    _magic(path, raw, LABEL_MAGIC)
    if len(raw) < 8:
        raise DataError(f"{path}: too short for an IDX label file")
    count = struct.unpack(">I", raw[4:8])[0]
    data = np.frombuffer(raw[8:], dtype=np.uint8)
    if len(data) != count:
        raise DataError(f"{path}: {len(data)} labels, header says {count}")
    if count and data.max() >= classes:
        raise DataError(f"{path}: label {int(data.max())} is outside 0..{classes - 1}")
    return data.astype(np.int64)


def load_mnist(folder: str | Path) -> Dataset:
    """MNIST from ``folder``: ``(N, 1, rows, cols)`` images, 256 levels, with labels when their files exist."""
    folder = Path(folder)
    files = {"train": find_file(folder, TRAIN_IMAGES), "test": find_file(folder, TEST_IMAGES)}
    train, test = read_idx_images(files["train"]), read_idx_images(files["test"])
    data = Dataset("mnist", examples(train), examples(test), levels=256,
                   info={"labels_hint": "expected train-labels-idx1-ubyte and t10k-labels-idx1-ubyte "
                                        "beside the images"})
    label_files = {"labels_train": find_file(folder, TRAIN_LABELS, False),
                   "labels_test": find_file(folder, TEST_LABELS, False)}
    if all(label_files.values()):
        found = {}
        for part, images in (("labels_train", train), ("labels_test", test)):
            found[part] = read_idx_labels(label_files[part])
            if len(found[part]) != len(images):
                raise DataError(f"{label_files[part]}: {len(found[part])} labels for {len(images)} images "
                                f"in {files[part.split('_')[1]]}")
        data.labels_train, data.labels_test = labels(found["labels_train"]), labels(found["labels_test"])
        data.classes = MNIST_CLASSES
        files.update(label_files)
    else:
        files.update(labels_train=folder, labels_test=folder)
    data.files = {part: str(path) for part, path in files.items()}
    return data
