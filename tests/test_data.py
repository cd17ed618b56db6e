"""Loaders read small files written in the real formats; a data set that does not fit the spec is a
clear DataError before training."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from flowspec.data import check_fits, load_cifar10, load_data, load_digits, load_folder, load_mnist, load_npz
from flowspec.errors import DataError


def write_idx_images(path, images: np.ndarray, compress=False):
    count, rows, cols = images.shape
    payload = struct.pack(">IIII", 2051, count, rows, cols) + images.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def write_idx_labels(path, labels: np.ndarray):
    open(path, "wb").write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def test_digits_split_is_fixed_and_fits_17_levels():
    a, b = load_digits(), load_digits()
    assert a.train.shape == (1497, 1, 8, 8) and a.test.shape == (300, 1, 8, 8)
    assert torch.equal(a.test, b.test)
    assert a.train.min() == 0 and a.train.max() == 16
    check_fits(a, (1, 8, 8), 17)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    suffix = ".gz" if compress else ""
    write_idx_images(tmp_path / f"train-images-idx3-ubyte{suffix}", train, compress)
    write_idx_images(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test, compress)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", np.arange(5))
    data = load_data("mnist", tmp_path, (1, 28, 28), 256)
    assert data.train.shape == (5, 1, 28, 28) and data.test.shape == (3, 1, 28, 28)
    assert np.array_equal(data.train[:, 0].numpy(), train)


def test_mnist_label_file_in_place_of_images_is_named(tmp_path):
    write_idx_labels(tmp_path / "train-images-idx3-ubyte", np.arange(5))
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="magic 2049, expected 2051.*label file"):
        load_mnist(tmp_path)


def test_mnist_truncated_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 10, 28, 28) + b"\0" * 100)
    write_idx_images(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match="header says 10x28x28"):
        load_mnist(tmp_path)


def test_cifar10_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = []
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        batches.append(data)
        with open(folder / name, "wb") as stream:
            pickle.dump({b"data": data, b"labels": list(range(4)), b"batch_label": name.encode()}, stream)
    split = load_cifar10(tmp_path)
    assert split.train.shape == (8, 3, 32, 32) and split.test.shape == (4, 3, 32, 32)
    # channel-major rows: the first 1024 values are the red plane
    assert np.array_equal(split.train[0, 0].numpy().ravel(), batches[0][0, :1024])
    assert np.array_equal(split.test[3, 2].numpy().ravel(), batches[2][3, 2048:])


def test_cifar10_missing_test_batch(tmp_path):
    with open(tmp_path / "data_batch_1", "wb") as stream:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, stream)
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(tmp_path)


def test_image_folder_grey_and_rgb(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for part, count in (("train", 3), ("test", 2)):
        (tmp_path / part).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)).save(tmp_path / part / f"{i}.png")
    rgb = load_folder(tmp_path, 3)
    assert rgb.train.shape == (3, 3, 6, 4) and rgb.test.shape == (2, 3, 6, 4)
    first = np.asarray(Image.open(tmp_path / "train" / "0.png"))
    assert np.array_equal(rgb.train[0].numpy().transpose(1, 2, 0), first)
    grey = load_data("folder", tmp_path, (1, 6, 4), 256)
    assert grey.train.shape == (3, 1, 6, 4)


def test_npz_and_npy(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "d.npz", train=rng.integers(0, 5, (10, 4, 4)), test=rng.integers(0, 5, (3, 4, 4)))
    data = load_data("npz", tmp_path / "d.npz", (1, 4, 4), 5)  # (N, H, W) read as one channel
    assert data.train.shape == (10, 1, 4, 4)
    np.save(tmp_path / "v.npy", rng.integers(0, 3, (20, 6)))
    vectors = load_npz(tmp_path / "v.npy", (6,), 3)
    assert len(vectors.train) == 18 and len(vectors.test) == 2


@pytest.mark.parametrize("shape, levels, message", [
    ((1, 7, 7), 17, r"shape \[1, 8, 8\], the spec's input.shape is \[1, 7, 7\]"),
    ((1, 8, 8), 8, r"values span 0..16, the spec's input.levels is 8.*set input.levels: 17"),
])
def test_data_that_does_not_fit_the_spec(shape, levels, message):
    with pytest.raises(DataError, match=message):
        load_data("digits", None, shape, levels)


def test_non_integer_values_and_missing_dir(tmp_path):
    np.savez(tmp_path / "f.npz", train=np.full((4, 3), 0.5), test=np.zeros((2, 3)))
    with pytest.raises(DataError, match="non-integer"):
        load_data("npz", tmp_path / "f.npz", (3,), 256)
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data("mnist", None, (1, 28, 28), 256)
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_data("imagenet", None, (1, 28, 28), 256)
