"""The dequantizer module of a ``dequantization:`` config (its kind builds it)."""

from __future__ import annotations

from torch import nn


def build_dequantizer(config, shape, levels: int = 256) -> nn.Module:
    """The dequantizer of ``config`` for data of ``shape`` with ``levels`` levels."""
    return config.build(tuple(shape), levels)
