"""``conv``: conv(k) -> ReLU -> [conv 1x1 -> ReLU] * (depth - 1) -> conv(k), the last conv
zero-initialised (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 3.3). The context, if any,
enters as extra input channels of the first conv.

Glow's two options (its code's ``f``): ``actnorm`` puts an actnorm after each hidden conv (before
the ReLU), ``y = (h + b) * exp(log s)`` per channel with data-dependent init (the first training
batch gives each channel zero mean and unit variance, averaged over ranks under DDP), and drops
those convs' biases, as Glow does; ``learned_scale`` multiplies the last conv's output by
``exp(3 logs)``, ``logs`` a zero-initialised per-channel parameter.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.distributed as dist
from pydantic import Field, PositiveInt
from torch import nn

from flowspec.core.fields import ODD_KERNEL
from flowspec.layers.base import DataInitialized, MatmulOp
from flowspec.layers.conditioners.base import (ChannelsLastNet, ConditionerConfig, NetCost, PointwiseConv,
                                               register_conditioner, stack_cost, zero_init)


@register_conditioner
class ConvConditioner(ConditionerConfig):
    kind: Literal["conv"] = "conv"
    hidden: PositiveInt = 512
    kernel: Annotated[int, Field(ge=1, le=7), ODD_KERNEL] = 3
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    zero_init: bool = True
    actnorm: bool = False
    learned_scale: bool = False


    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        pad = self.kernel // 2
        bias = not self.actnorm

        def hidden(conv: nn.Conv2d) -> list[nn.Module]:
            # in-place ReLU: a conv's backward needs its input, not its output, so nothing is lost
            return [conv, *([HiddenActNorm(self.hidden)] if self.actnorm else []), nn.ReLU(inplace=True)]

        layers = hidden(nn.Conv2d(in_channels + context, self.hidden, self.kernel, padding=pad, bias=bias))
        for _ in range(self.depth - 1):
            if self.actnorm:
                layers += hidden(PointwiseConv(self.hidden, self.hidden, bias=False))
            else:  # the 1x1 conv applies its ReLU itself; the ReLU's slot keeps the stack's indices
                layers += [PointwiseConv(self.hidden, self.hidden, relu=True), nn.Identity()]
        last = nn.Conv2d(self.hidden, out_channels, self.kernel, padding=pad)
        if self.zero_init:
            zero_init(last)
        layers.append(last)
        if self.learned_scale:
            layers.append(LearnedScale(out_channels))
        return ChannelsLastNet(*layers).to(memory_format=torch.channels_last)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        shapes = [(in_channels + context, self.hidden, self.kernel)]
        shapes += [(self.hidden, self.hidden, 1)] * (self.depth - 1)
        return shapes + [(self.hidden, out_channels, self.kernel)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Params, conv FLOPs and outputs per example over ``spatial`` pixels (padding keeps H x W);
        with ``actnorm`` each hidden conv trades its bias for an actnorm (``2 hidden`` params, 2
        FLOPs and 2 ops per output); ``learned_scale`` adds ``out`` params (an exp and a multiply)."""
        net = stack_cost(self.convs(in_channels, out_channels, context), spatial)
        params, elementwise, ops, outputs = net.params, 0.0, 0, net.outputs
        if self.actnorm:
            params += self.depth * self.hidden
            elementwise += 2.0 * self.depth * self.hidden * spatial
            ops += 2 * self.depth
            outputs += self.depth * self.hidden * spatial
        if self.learned_scale:
            params += out_channels
            elementwise += out_channels * spatial
            ops += 3
            outputs += out_channels * spatial
        return net._replace(params=params, elementwise=elementwise, extra_ops=ops, outputs=outputs)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, k, spatial, channels_last=True)
                for i, o, k in self.convs(in_channels, out_channels, context)]

    def narrow(self, width: int) -> "ConvConditioner":
        return self.model_copy(update={"hidden": min(self.hidden, width)})


class HiddenActNorm(DataInitialized):
    """Glow's actnorm on a hidden layer: ``(h + b) * exp(log s)`` per channel; the first training
    call sets ``b = -mean``, ``exp(log s) = 1 / std`` from its batch (averaged over ranks)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_initialized(False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.training and self.pending:
            self._initialize(h)
        return (h + self.bias) * torch.exp(self.log_scale)

    @torch.no_grad()
    def _initialize(self, h: torch.Tensor) -> None:
        stats = torch.stack([h.mean(dim=(0, 2, 3)), (h * h).mean(dim=(0, 2, 3))])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
        mean, mean_sq = stats
        std = (mean_sq - mean * mean).clamp_min(0).sqrt()
        self.bias.copy_(-mean.view_as(self.bias))
        self.log_scale.copy_(-torch.log(std + 1e-6).view_as(self.log_scale))
        self.mark_initialized()


class LearnedScale(nn.Module):
    """Glow's output scale: ``h * exp(3 logs)`` per channel, ``logs`` zero-initialised."""

    def __init__(self, channels: int):
        super().__init__()
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * torch.exp(3.0 * self.logs)
