"""``resnet``: RealNVP's conditioner (Dinh et al. 2017, arXiv:1605.08803, sec. 4.1 and its code):
a conv(3x3) into ``hidden`` channels, ``blocks`` residual blocks ``h + conv(relu(norm(conv(relu(norm(h))))))``
of 3x3 convs, then ``relu(norm(h))`` and a zero-initialised conv(3x3) out.

``norm: batch`` is batch normalisation of the hidden maps (batch statistics in training, running
averages in evaluation; the coupling's log-det stays exact either way, since the conditioner need
not be invertible). ``norm: weight`` reparametrises every conv as ``W = g v / ||v||`` per output
channel (weight normalisation, Salimans & Kingma 2016, arXiv:1602.07868) and has no batch norm:
its output does not depend on the rest of the batch. The context, if any, enters as extra input
channels of the first conv.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import (ConditionerConfig, NetCost, register_conditioner, stack_cost,
                                               with_context)


@register_conditioner
class ResNetConditioner(ConditionerConfig):
    kind: Literal["resnet"] = "resnet"
    hidden: PositiveInt = Field(64, description="H, channels of the residual blocks")
    blocks: Annotated[int, Field(ge=1, le=64)] = Field(4, description="B, residual blocks")
    norm: Literal["batch", "weight"] = "batch"
    zero_init: bool = True

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        return ResNet(in_channels + context, out_channels, self.hidden, self.blocks, self.norm, self.zero_init)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        h = self.hidden
        return [(in_channels + context, h, 3)] + [(h, h, 3)] * (2 * self.blocks) + [(h, out_channels, 3)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Params, conv FLOPs and outputs per example: the convs' ``sum(i o 9 + o)``; ``batch`` adds
        ``2 H`` params per norm (``2B + 1`` norms: 2 FLOPs per element in evaluation, ~5 in
        training, counted as 4) and their outputs; ``weight`` adds ``o`` (the ``g``) per conv.
        Each block adds its residual (1 FLOP per element)."""
        return residual_stack_cost(self.convs(in_channels, out_channels, context), self.hidden, self.blocks,
                                   self.norm, spatial)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, k, spatial) for i, o, k in self.convs(in_channels, out_channels, context)]

    def narrow(self, width: int) -> "ResNetConditioner":
        return self.model_copy(update={"hidden": min(self.hidden, width)})


def residual_stack_cost(layers: list[tuple[int, int, int]], hidden: int, blocks: int, norm: str,
                        spatial: int) -> NetCost:
    """The :class:`NetCost` of a :class:`ResidualStack` of convs / linears ``(in, out, kernel)`` over
    ``spatial`` pixels (1 for linears): ``batch`` adds ``2 hidden`` params per norm (``2B + 1``
    norms, counted as 4 FLOPs per element) and their outputs; ``weight`` adds ``o`` (the ``g``) per
    layer and 4 ops (norm of v, divide, scale); each block adds its residual (1 FLOP per element)."""
    net = stack_cost(layers, spatial)
    norms = 2 * blocks + 1
    residual = blocks * hidden * spatial
    if norm == "batch":
        return net._replace(params=net.params + 2 * hidden * norms, outputs=net.outputs + norms * hidden * spatial,
                            elementwise=4.0 * norms * hidden * spatial + residual, extra_ops=norms + blocks)
    return net._replace(params=net.params + sum(o for _, o, _ in layers), elementwise=float(residual),
                        extra_ops=4 * len(layers) + blocks)


class WeightNormConv2d(nn.Module):
    """A conv with ``W = g v / ||v||`` (the norm per output channel), ``g`` initialised to
    ``||v||`` so that it starts as the plain conv; ``bias=False`` leaves the bias out."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True):
        super().__init__()
        conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        self.v = nn.Parameter(conv.weight.detach().clone())
        self.g = nn.Parameter(conv.weight.detach().flatten(1).norm(dim=1))
        self.bias = nn.Parameter(conv.bias.detach().clone()) if bias else None
        self.padding = kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        norm = self.v.flatten(1).norm(dim=1).clamp_min(1e-12)
        weight = self.v * (self.g / norm).view(-1, 1, 1, 1)
        return F.conv2d(x, weight, self.bias, padding=self.padding)


class ResidualStack(nn.Module):
    """``first -> [h + block(h)] * blocks -> norm, ReLU -> last`` with ``block = (norm, ReLU,
    layer) * 2``; ``layer(i, o)`` and ``normalise()`` make the convs or linears and their norms.
    With ``zero_init`` the last layer starts at zero (weight norm: ``g = 0``, ``v`` kept random
    so that its norm is not 0)."""

    def __init__(self, layer, normalise, cin: int, cout: int, hidden: int, blocks: int, zero_init: bool):
        super().__init__()
        self.first = layer(cin, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(normalise(), nn.ReLU(), layer(hidden, hidden), normalise(), nn.ReLU(), layer(hidden, hidden))
            for _ in range(blocks))
        self.head = nn.Sequential(normalise(), nn.ReLU())
        self.last = layer(hidden, cout)
        if zero_init:
            with torch.no_grad():
                for p in self.last.parameters():
                    p.zero_()
                if hasattr(self.last, "v"):
                    self.last.v.copy_(torch.randn_like(self.last.v))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.first(with_context(x, context))
        for block in self.blocks:
            h = h + block(h)
        return self.last(self.head(h))


class ResNet(ResidualStack):
    """RealNVP's residual conv stack (3x3 convs, batch or weight norm)."""

    def __init__(self, cin: int, cout: int, hidden: int, blocks: int, norm: str, zero_init: bool):
        def conv(i: int, o: int) -> nn.Module:
            return WeightNormConv2d(i, o, 3) if norm == "weight" else nn.Conv2d(i, o, 3, padding=1)

        def normalise() -> nn.Module:
            return nn.BatchNorm2d(hidden) if norm == "batch" else nn.Identity()

        super().__init__(conv, normalise, cin, cout, hidden, blocks, zero_init)
