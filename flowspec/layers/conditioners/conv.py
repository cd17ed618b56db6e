"""``conv``: conv(k) -> ReLU -> [conv 1x1 -> ReLU] * (depth - 1) -> conv(k), the last conv
zero-initialised (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 3.3). The context, if any,
enters as extra input channels of the first conv."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import (ChannelsLastNet, ConditionerConfig, NetCost, register_conditioner,
                                               stack_cost, zero_init)


@register_conditioner
class ConvConditioner(ConditionerConfig):
    kind: Literal["conv"] = "conv"
    hidden: PositiveInt = 512
    kernel: Annotated[int, Field(ge=1, le=7)] = 3
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    zero_init: bool = True

    @field_validator("kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd so that padding keeps the image's H x W, got {kernel} "
                             f"(use {kernel - 1} or {kernel + 1})")
        return kernel

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        pad = self.kernel // 2
        # in-place ReLU: a conv's backward needs its input, not its output, so nothing is lost
        layers: list[nn.Module] = [nn.Conv2d(in_channels + context, self.hidden, self.kernel, padding=pad),
                                   nn.ReLU(inplace=True)]
        for _ in range(self.depth - 1):
            layers += [nn.Conv2d(self.hidden, self.hidden, 1), nn.ReLU(inplace=True)]
        last = nn.Conv2d(self.hidden, out_channels, self.kernel, padding=pad)
        if self.zero_init:
            zero_init(last)
        return ChannelsLastNet(*layers, last).to(memory_format=torch.channels_last)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        shapes = [(in_channels + context, self.hidden, self.kernel)]
        shapes += [(self.hidden, self.hidden, 1)] * (self.depth - 1)
        return shapes + [(self.hidden, out_channels, self.kernel)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Params, conv FLOPs and outputs per example over ``spatial`` pixels (padding keeps H x W)."""
        return stack_cost(self.convs(in_channels, out_channels, context), spatial)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, k, spatial, channels_last=True)
                for i, o, k in self.convs(in_channels, out_channels, context)]

    def narrow(self, width: int) -> "ConvConditioner":
        return self.model_copy(update={"hidden": min(self.hidden, width)})
