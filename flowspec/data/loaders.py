"""One entry point over every data kind: :func:`load_data` loads, then checks against the spec.

Kinds (the ``--data`` option): ``digits``, ``wine``, ``moons`` and ``diabetes`` need no files (scikit-learn); ``mnist``,
``cifar10``, ``folder``, ``npz`` and ``csv`` read ``data_dir``, and so do the MAF paper's UCI tables ``power``, ``gas``,
``hepmass``, ``miniboone`` and ``bsds300`` (:mod:`flowspec.data.uci`) (``--data-dir``), a folder or a file.
Each kind's format is described in its own module (``bundled``, ``mnist``, ``cifar``, ``folder``,
``npz``, ``table``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from flowspec.data.bundled import load_diabetes, load_digits, load_moons, load_wine
from flowspec.data.cifar import load_cifar10
from flowspec.data.dataset import Dataset, DataSplit, check_column_types, check_condition, check_fits, standardized
from flowspec.data.folder import load_folder
from flowspec.data.mnist import load_mnist, read_idx_images, read_idx_labels
from flowspec.data.npz import load_npz
from flowspec.data.table import load_csv
from flowspec.data.uci import UCI_KINDS, load_uci
from flowspec.errors import DataError
from flowspec.spec.training import DATA_SETS

DATA_KINDS = DATA_SETS  # one list: the spec's training.data names the same kinds
BUNDLED_KINDS = ("digits", "wine", "moons", "diabetes")

__all__ = ["BUNDLED_KINDS", "DATA_KINDS", "DataSplit", "Dataset", "check_condition", "check_fits", "load_cifar10",
           "load_csv", "load_data", "load_digits", "load_folder", "load_mnist", "load_moons", "load_npz",
           "load_wine", "random_flip", "random_shift", "read_idx_images", "read_idx_labels", "reduce_bits"]


def reduce_bits(data: Dataset, bits: int) -> Dataset:
    """8-bit data reduced to ``bits`` bits, ``x -> floor(x / 2^(8 - bits))``, ``2^bits`` levels
    (Glow's 5-bit CelebA-HQ, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 5)."""
    if data.levels != 256:
        raise DataError(f"input.bits reduces 8-bit data (256 levels); data set {data.name!r} has "
                        f"{data.levels} levels (drop input.bits)")
    step = float(2 ** (8 - bits))
    return dataclasses.replace(data, train=torch.floor(data.train / step), test=torch.floor(data.test / step),
                               levels=2 ** bits)


def random_flip(x: Tensor, seed: int) -> Tensor:
    """Each image of the batch mirrored left-right with probability 1/2 (a draw seeded by
    ``seed``, so runs repeat); vectors pass unchanged."""
    if x.dim() != 4:
        return x
    flip = torch.rand(x.shape[0], generator=torch.Generator().manual_seed(seed & ((1 << 63) - 1))) < 0.5
    return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_shift(x: Tensor, fraction: float, seed: int) -> Tensor:
    """Each image of the batch translated by ``(dy, dx)`` drawn uniformly from
    ``[-fraction H, fraction H] x [-fraction W, fraction W]`` pixels, bilinear between pixels with
    the border repeated outside (Keras' ``width_shift_range`` / ``height_shift_range`` with
    ``fill_mode="nearest"``, as Glow's CIFAR-10 loader uses them), then floored back to integer
    levels as Glow's ``x_to_uint8`` does; a draw seeded by ``seed``. Vectors pass unchanged."""
    if x.dim() != 4 or fraction == 0:
        return x
    import torch.nn.functional as F

    n, _, height, width = x.shape
    draw = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed & ((1 << 63) - 1)), dtype=torch.float64)
    offset = (2 * draw - 1) * fraction * torch.tensor([width, height], dtype=torch.float64)  # pixels (x, y)
    rows = (torch.arange(height, dtype=torch.float64).view(1, -1, 1) - offset[:, 1].view(-1, 1, 1)).expand(n, height, width)
    cols = (torch.arange(width, dtype=torch.float64).view(1, 1, -1) - offset[:, 0].view(-1, 1, 1)).expand(n, height, width)
    # normalised sampling coordinates (align_corners: -1 and 1 are the outer pixel centres)
    grid = torch.stack([2 * cols / max(width - 1, 1) - 1, 2 * rows / max(height - 1, 1) - 1], dim=-1)
    moved = F.grid_sample(x.to(torch.float64), grid.to(x.device), mode="bilinear", padding_mode="border",
                          align_corners=True)
    return torch.floor(moved + 1e-6).to(x.dtype)  # 1e-6: a whole-pixel shift keeps the exact levels


def flattened_for(data: Dataset, shape: tuple[int, ...]) -> Dataset:
    """Images ``(N, C, H, W)`` read as vectors ``(N, C·H·W)`` (row-major) when the spec's input is a
    vector of that many entries (NICE's 784-dimensional MNIST, Dinh et al. 2014, sec. 5.1); else ``data``."""
    if len(shape) != 1 or data.train.dim() <= 2 or data.train[0].numel() != shape[0]:
        return data
    return dataclasses.replace(data, train=data.train.reshape(len(data.train), -1),
                               test=data.test.reshape(len(data.test), -1))


def load_data(kind: str, data_dir: str | Path | None, shape: tuple[int, ...], levels: int | None, *,
              classes: int | None = None, context_dim: int | None = None, standardize: bool = False,
              features: list[str] | None = None, context_columns: list[str] | tuple = (),
              label_column: str | None = None, bits: int | None = None, columns=None) -> Dataset:
    """Load data set ``kind`` and check it against the spec.

    - ``shape``, ``levels``: the spec's input; ``levels`` None means continuous data (any finite values).
      A vector ``shape`` of ``C·H·W`` entries reads images flattened row-major.
    - ``classes``: the spec is class-conditional; every example needs a label in ``0 .. classes-1``.
    - ``context_dim``: the spec is context-conditional; every example needs a context vector of that width.
    - ``standardize``: scale continuous data per feature to zero mean, unit std (train statistics).
    - ``features``, ``context_columns``, ``label_column``: the columns of a ``csv`` table.
    - ``bits``: the spec's ``input.bits``: 8-bit data reduced to that many bits first.
    - ``columns``: the spec's ``input.columns``: every value must lie in its column type's domain
      (a CSV cell is named by file, line and column name; other data by file, row and column index).
    """
    if kind not in DATA_KINDS:
        raise DataError(f"unknown data set {kind!r}; known: {', '.join(DATA_KINDS)}")
    if kind not in BUNDLED_KINDS + UCI_KINDS and data_dir is None:  # a UCI loader names its file
        raise DataError(f"data set {kind} needs --data-dir: its files are supplied by the user (nothing is downloaded)")
    if kind != "csv" and (features or context_columns or label_column):
        raise DataError(f"--data {kind}: feature, context and label columns apply to csv tables only")
    if kind == "digits":
        data = load_digits()
    elif kind == "wine":
        data = load_wine()
    elif kind == "moons":
        data = load_moons()
    elif kind == "diabetes":
        data = load_diabetes()
    elif kind in UCI_KINDS:
        data = load_uci(kind, data_dir)
    elif kind == "mnist":
        data = load_mnist(data_dir)
    elif kind == "cifar10":
        data = load_cifar10(data_dir)
    elif kind == "folder":
        data = load_folder(data_dir, shape[0] if len(shape) == 3 else 1)
    elif kind == "npz":
        data = load_npz(data_dir, shape, 256 if bits else levels)
    else:
        data = load_csv(data_dir, features, context_columns, label_column, levels, types=columns)
    data = flattened_for(data, shape)
    if bits:
        check_fits(data, shape, 256)
        data = reduce_bits(data, bits)
    check_fits(data, shape, levels)
    if columns:
        check_column_types(data, columns)
    if standardize:
        typed = sorted({entry.kind for entry in columns or () if not entry.identity})
        if typed:
            raise DataError(f"{data.file('train')}: --standardize rescales every column, but input.columns types "
                            f"some as {', '.join(typed)} (their maps read the raw values); drop --standardize "
                            f"and start the flow with an actnorm layer, which standardizes after the maps")
        if levels is not None:
            raise DataError(f"{data.file('train')}: standardisation applies to continuous data; the spec models "
                            f"{levels} discrete levels")
        data = standardized(data)
    check_condition(data, classes=classes, context_dim=context_dim)
    return data
