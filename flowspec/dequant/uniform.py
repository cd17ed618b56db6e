"""Uniform dequantization (Theis et al. 2016, arXiv:1511.01844): ``v = x + u``, ``u ~ U[0,1)^D``,
``log q(u|x) = 0``. Then ``log P(x) >= E_u[log p(v)]``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from flowspec.dequant.base import CLUSTER, PATH, DequantizerConfig, register_dequantizer
from flowspec.core.costs import LayerCost, Shape, numel


def in_bin(x: Tensor, u: Tensor) -> Tensor:
    """``v = x + u`` kept in ``[x, x + 1)`` in floating point: with ``u`` just below 1 the sum can
    round up to ``x + 1`` (in float32 from ``x = 16``), so it is capped at the float below ``x + 1``."""
    return torch.minimum(x + u, torch.nextafter(x + 1, x))


@register_dequantizer
class UniformDequantization(DequantizerConfig):
    """``y = (x + u) / n (- 1/2 when centred)``, ``u ~ U[0, 1)^D``."""

    kind: Literal["uniform"] = "uniform"

    def add_noise_nodes(self, graph, shape: Shape, data: str, out: str) -> None:
        """``u ~ U[0, 1)^D`` into the node ``out`` (``v = x + u`` in model space)."""
        noise = f"{CLUSTER}.uniform"
        graph.add_node(noise, kind="uniform noise", cluster=CLUSTER, formula="u ~ U[0, 1)^D", path=PATH)
        graph.add_edge(noise, out, shape=shape)

    def cost(self, shape: Shape) -> LayerCost:
        """One training-step pass (it does not run when sampling): a draw and an add per entry,
        ``2 D`` FLOPs, no parameters."""
        return LayerCost(flops_forward=2.0 * numel(shape), ops=6)  # rand, add, bin cap; to model space

    def build(self, shape: Shape, levels: int) -> "UniformDequantizer":
        return UniformDequantizer()


class UniformDequantizer(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(v, log q(u|x))`` for integer-valued ``x``."""
        u = torch.rand_like(x)
        return in_bin(x, u), x.new_zeros(x.shape[0])
