"""Uniform dequantization (Theis et al. 2016, arXiv:1511.01844): ``v = x + u``, ``u ~ U[0,1)^D``,
``log q(u|x) = 0``. Then ``log P(x) >= E_u[log p(v)]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def in_bin(x: Tensor, u: Tensor) -> Tensor:
    """``v = x + u`` kept in ``[x, x + 1)`` in floating point: with ``u`` just below 1 the sum can
    round up to ``x + 1`` (in float32 from ``x = 16``), so it is capped at the float below ``x + 1``."""
    return torch.minimum(x + u, torch.nextafter(x + 1, x))


class UniformDequantizer(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(v, log q(u|x))`` for integer-valued ``x``."""
        u = torch.rand_like(x)
        return in_bin(x, u), x.new_zeros(x.shape[0])
