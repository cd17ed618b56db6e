"""Loaders of local data sets in their real formats.

- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, grey levels 0..16, so 17 levels), a
  fixed seeded split of 1497 train / 300 test images.
- ``mnist``: the IDX files ``train-images-idx3-ubyte`` / ``t10k-images-idx3-ubyte`` (optionally
  ``.gz``); header: magic 2051 (images) or 2049 (labels), then big-endian counts and sizes.
- ``cifar10``: the python-pickle batches ``data_batch_1..5`` and ``test_batch`` (dicts with
  ``b'data'`` of shape (N, 3072) uint8 and ``b'labels'``), optionally inside ``cifar-10-batches-py``.
- ``folder``: images under ``DIR/train`` and ``DIR/test`` (or a single folder, split 90/10 with a
  fixed seed), read with pillow, converted to grey (1 channel) or RGB (3 channels) per the spec.
- ``npz``: ``.npz`` with arrays ``train`` and ``test`` (or ``x_train``/``x_test``), or a
  ``.npy`` file split 90/10 with a fixed seed; layout ``(N, *shape)`` (``(N, H, W)`` is read as one
  channel, ``(N, H, W, C)`` is moved to channels first when that fits the spec).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowspec.errors import DataError

DATA_KINDS = ("digits", "mnist", "cifar10", "folder", "npz")
SPLIT_SEED = 1234
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class DataSplit:
    """Integer-valued float32 tensors ``(N, *shape)`` in ``0 .. levels-1``."""

    name: str
    train: Tensor
    test: Tensor
    levels: int

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def _split(array: np.ndarray, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(array))
    n_test = max(1, int(round(len(array) * test_fraction)))
    return array[order[n_test:]], array[order[:n_test]]


def _tensor(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def load_digits() -> DataSplit:
    """The bundled 8x8 digits, ``(N, 1, 8, 8)``, 17 levels; 300 test images (seeded split)."""
    from sklearn.datasets import load_digits as sklearn_digits

    images = sklearn_digits().images.astype(np.int64)[:, None]  # (1797, 1, 8, 8), values 0..16
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    return DataSplit("digits", _tensor(images[order[300:]]), _tensor(images[order[:300]]), levels=17)


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _find(folder: Path, names: list[str]) -> Path:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: none of {', '.join(names)} (or .gz) found")


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX3 image file: magic 2051, count, rows, columns (big-endian uint32), then uint8 pixels."""
    with _open(path) as stream:
        header = stream.read(4)
        magic = struct.unpack(">I", header)[0] if len(header) == 4 else None
        if magic != 2051:
            raise DataError(f"{path}: IDX magic {magic}, expected 2051 (images)"
                            + (" — this is a label file" if magic == 2049 else ""))
        header = stream.read(12)
        if len(header) < 12:
            raise DataError(f"{path}: too short for an IDX image file")
        count, rows, cols = struct.unpack(">III", header)
        data = stream.read()
    if len(data) != count * rows * cols:
        raise DataError(f"{path}: {len(data)} bytes of pixels, header says {count}x{rows}x{cols}")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, 1, rows, cols)


def load_mnist(folder: str | Path) -> DataSplit:
    folder = Path(folder)
    train = read_idx_images(_find(folder, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]))
    test = read_idx_images(_find(folder, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    return DataSplit("mnist", _tensor(train), _tensor(test), levels=256)


def _read_cifar_batch(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as stream:
            batch = pickle.load(stream, encoding="bytes")
    except Exception as error:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__})") from None
    if not isinstance(batch, dict) or b"data" not in batch:
        raise DataError(f"{path}: not a CIFAR-10 python batch (no b'data')")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32)


def load_cifar10(folder: str | Path) -> DataSplit:
    folder = Path(folder)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
    if not train_files or not (folder / "test_batch").is_file():
        raise DataError(f"{folder}: needs data_batch_1..5 and test_batch (CIFAR-10 python version)")
    train = np.concatenate([_read_cifar_batch(path) for path in train_files])
    return DataSplit("cifar10", _tensor(train), _tensor(_read_cifar_batch(folder / "test_batch")), levels=256)


def _read_images(files: list[Path], channels: int) -> np.ndarray:
    from PIL import Image

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"image folders give 1 (grey) or 3 (RGB) channels; the spec asks for {channels}")
    arrays = []
    for file in files:
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert(mode), dtype=np.uint8)
        except Exception as error:
            raise DataError(f"{file}: not a readable image ({type(error).__name__})") from None
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    if len({a.shape for a in arrays}) > 1:
        raise DataError(f"images of different sizes: {sorted({a.shape[1:] for a in arrays})}")
    return np.stack(arrays)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(folder: str | Path, channels: int) -> DataSplit:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train_files, test_files = _images_in(folder / "train"), _images_in(folder / "test")
        if not train_files or not test_files:
            raise DataError(f"{folder}: train/ and test/ need at least one image each")
        train, test = _read_images(train_files, channels), _read_images(test_files, channels)
    else:
        files = _images_in(folder)
        if len(files) < 2:
            raise DataError(f"{folder}: needs at least 2 images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        train, test = _split(_read_images(files, channels))
    return DataSplit(f"folder:{folder.name}", _tensor(train), _tensor(test), levels=256)


def load_npz(path: str | Path, shape: tuple[int, ...] | None = None, levels: int | None = None) -> DataSplit:
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.npz")) + sorted(path.glob("*.npy"))
        if len(found) != 1:
            raise DataError(f"{path}: expected one .npz or .npy file, found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise DataError(f"{path}: not a readable .npy/.npz ({type(error).__name__})") from None
    if isinstance(loaded, np.ndarray):
        train, test = _split(loaded)
    else:
        keys = set(loaded.files)
        for a, b in (("train", "test"), ("x_train", "x_test")):
            if {a, b} <= keys:
                train, test = loaded[a], loaded[b]
                break
        else:
            if len(keys) != 1:
                raise DataError(f"{path}: arrays {sorted(keys)}; expected train and test (or x_train, x_test)")
            train, test = _split(loaded[next(iter(keys))])
    train, test = (_layout(np.asarray(a), shape, path) for a in (train, test))
    if not np.issubdtype(train.dtype, np.integer) and not np.all(np.floor(train) == train):
        raise DataError(f"{path}: values must be integers 0..levels-1 (found non-integer values)")
    return DataSplit(f"npz:{path.name}", _tensor(train), _tensor(test), levels=levels or 256)


def _layout(array: np.ndarray, shape: tuple[int, ...] | None, path: Path) -> np.ndarray:
    if shape is None or tuple(array.shape[1:]) == tuple(shape):
        return array
    if array.ndim == 3 and len(shape) == 3 and shape[0] == 1 and tuple(array.shape[1:]) == tuple(shape[1:]):
        return array[:, None]
    if array.ndim == 4 and len(shape) == 3 and tuple(array.shape[1:]) == (shape[1], shape[2], shape[0]):
        return array.transpose(0, 3, 1, 2)
    return array


def check_fits(data: DataSplit, shape: tuple[int, ...], levels: int) -> None:
    """Raise :class:`DataError` unless every example has ``shape`` and values in ``0 .. levels-1``."""
    shape = tuple(shape)
    for part, tensor in (("train", data.train), ("test", data.test)):
        if tuple(tensor.shape[1:]) != shape:
            raise DataError(f"data set {data.name!r}: {part} examples have shape {list(tensor.shape[1:])}, "
                            f"the spec's input.shape is {list(shape)}")
        if len(tensor) == 0:
            raise DataError(f"data set {data.name!r}: the {part} split is empty")
        low, high = tensor.min().item(), tensor.max().item()
        if low < 0 or high > levels - 1 or not torch.equal(tensor, tensor.floor()):
            raise DataError(f"data set {data.name!r}: {part} values span {low:g}..{high:g}, the spec's "
                            f"input.levels is {levels} (integers 0..{levels - 1})"
                            + (f"; set input.levels: {data.levels}" if data.levels != levels else ""))


def reduce_bits(data: DataSplit, bits: int) -> DataSplit:
    """8-bit data reduced to ``bits`` bits, ``x -> floor(x / 2^(8 - bits))``, ``2^bits`` levels
    (Glow's 5-bit CelebA-HQ, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 5)."""
    if data.levels != 256:
        raise DataError(f"input.bits reduces 8-bit data (256 levels); data set {data.name!r} has "
                        f"{data.levels} levels (drop input.bits)")
    step = float(2 ** (8 - bits))
    return DataSplit(data.name, torch.floor(data.train / step), torch.floor(data.test / step), levels=2 ** bits)


def random_flip(x: Tensor, seed: int) -> Tensor:
    """Each image of the batch mirrored left-right with probability 1/2 (a draw seeded by
    ``seed``, so runs repeat); vectors pass unchanged."""
    if x.dim() != 4:
        return x
    flip = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(seed & ((1 << 63) - 1))) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def load_data(kind: str, data_dir: str | Path | None, shape: tuple[int, ...], levels: int,
              bits: int | None = None) -> DataSplit:
    """Load data set ``kind`` and check it against the spec's input ``shape`` and ``levels``
    (``bits``: the spec's ``input.bits``, reducing 8-bit data first)."""
    if kind not in DATA_KINDS:
        raise DataError(f"unknown data set {kind!r}; known: {', '.join(DATA_KINDS)}")
    if kind != "digits" and data_dir is None:
        raise DataError(f"--data {kind} needs --data-dir (nothing is downloaded)")
    if kind == "digits":
        data = load_digits()
    elif kind == "mnist":
        data = load_mnist(data_dir)
    elif kind == "cifar10":
        data = load_cifar10(data_dir)
    elif kind == "folder":
        data = load_folder(data_dir, shape[0] if len(shape) == 3 else 1)
    else:
        data = load_npz(data_dir, shape, 256 if bits else levels)
    if bits:
        check_fits(data, shape, 256)
        data = reduce_bits(data, bits)
    check_fits(data, shape, levels)
    return data
