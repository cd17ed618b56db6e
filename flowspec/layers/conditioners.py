"""Conditioner networks of coupling layers: ``conv`` for images, ``mlp`` for vectors.

They need not be invertible; their last layer is zero-initialised so that every coupling
starts as the identity (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 3.3).
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn


class ChannelsLastNet(nn.Sequential):
    """A conv stack that computes in channels_last (NHWC) layout; its input and output stay NCHW.

    oneDNN's NHWC kernels run Glow's conditioner shapes (a few channels in, 128-512 hidden, 3x3
    and 1x1) 2-4x faster than its NCHW ones on CPU; the two layout copies are of the thin input
    and output only. Parameters are stored channels_last, so no weight is re-laid per call.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class NetCost(NamedTuple):
    """Per example cost of a stack of convs / linears ``(in, out, kernel)`` over ``spatial`` pixels
    (1 for linears): ``params = sum(i o k^2 + o)``, ``matmul_flops = sum(2 i o k^2 spatial)``
    (a multiply-add is 2 FLOPs; the bias add is not counted, as torch's FlopCounterMode does not),
    ``outputs = sum(o spatial)`` the elements the layers output, the last one's included."""

    params: int
    matmul_flops: float
    outputs: int
    layers: int


def stack_cost(shapes: list[tuple[int, int, int]], spatial: int = 1) -> NetCost:
    """The :class:`NetCost` of convs / linears ``(in, out, kernel)``, each keeping ``spatial``."""
    return NetCost(params=sum(i * o * k * k + o for i, o, k in shapes),
                   matmul_flops=sum(2.0 * i * o * k * k * spatial for i, o, k in shapes),
                   outputs=sum(o * spatial for _, o, _ in shapes), layers=len(shapes))


class ConvConditioner(BaseModel):
    """conv(k) -> ReLU -> [conv 1x1 -> ReLU] * (depth - 1) -> conv(k), last conv zero-initialised."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["conv"] = "conv"
    hidden: PositiveInt = 512
    kernel: Annotated[int, Field(ge=1, le=7)] = 3
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    zero_init: bool = True

    def build(self, in_channels: int, out_channels: int) -> nn.Module:
        pad = self.kernel // 2
        # in-place ReLU: a conv's backward needs its input, not its output, so nothing is lost
        layers: list[nn.Module] = [nn.Conv2d(in_channels, self.hidden, self.kernel, padding=pad),
                                   nn.ReLU(inplace=True)]
        for _ in range(self.depth - 1):
            layers += [nn.Conv2d(self.hidden, self.hidden, 1), nn.ReLU(inplace=True)]
        last = nn.Conv2d(self.hidden, out_channels, self.kernel, padding=pad)
        if self.zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        return ChannelsLastNet(*layers, last).to(memory_format=torch.channels_last)

    def convs(self, in_channels: int, out_channels: int) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        shapes = [(in_channels, self.hidden, self.kernel)]
        shapes += [(self.hidden, self.hidden, 1)] * (self.depth - 1)
        return shapes + [(self.hidden, out_channels, self.kernel)]

    def cost(self, in_channels: int, out_channels: int, spatial: int) -> NetCost:
        """Params, conv FLOPs and outputs per example over ``spatial`` pixels (padding keeps H x W)."""
        return stack_cost(self.convs(in_channels, out_channels), spatial)


class MLPConditioner(BaseModel):
    """Linear -> ReLU per hidden size, then a zero-initialised linear output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["mlp"] = "mlp"
    hidden: Annotated[list[PositiveInt], Field(min_length=1)] = [256, 256]
    zero_init: bool = True

    def build(self, in_features: int, out_features: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        last = nn.Linear(width, out_features)
        if self.zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        return nn.Sequential(*layers, last)

    def linears(self, in_features: int, out_features: int) -> list[tuple[int, int]]:
        sizes = [in_features, *self.hidden, out_features]
        return list(zip(sizes[:-1], sizes[1:]))

    def cost(self, in_features: int, out_features: int, spatial: int = 1) -> NetCost:
        """Params, matmul FLOPs and outputs per example (``spatial`` is 1: a vector)."""
        return stack_cost([(i, o, 1) for i, o in self.linears(in_features, out_features)], spatial)


Conditioner = Annotated[Union[ConvConditioner, MLPConditioner], Field(discriminator="kind")]
