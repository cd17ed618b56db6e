"""Uniform dequantization (Theis et al. 2016, arXiv:1511.01844): ``v = x + u``, ``u ~ U[0,1)^D``,
``log q(u|x) = 0``. Then ``log P(x) >= E_u[log p(v)]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UniformDequantizer(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(v, log q(u|x))`` for integer-valued ``x``."""
        u = torch.rand_like(x)
        return x + u, x.new_zeros(x.shape[0])


def build_dequantizer(config, shape) -> nn.Module:
    if config.kind == "uniform":
        return UniformDequantizer()
    raise ValueError(f"unknown dequantization {config.kind!r}")
