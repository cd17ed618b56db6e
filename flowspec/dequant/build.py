"""The dequantizer module of a ``dequantization:`` config, looked up by its ``kind``."""

from __future__ import annotations

from torch import nn

from flowspec.dequant.uniform import UniformDequantizer
from flowspec.dequant.variational import VariationalDequantizer

DEQUANTIZERS = {
    "uniform": lambda config, shape, levels: UniformDequantizer(),
    "variational": lambda config, shape, levels: VariationalDequantizer(config, tuple(shape), levels),
}


def build_dequantizer(config, shape, levels: int = 256) -> nn.Module:
    """The dequantizer of ``config`` for data of ``shape`` with ``levels`` levels."""
    return DEQUANTIZERS[config.kind](config, shape, levels)
