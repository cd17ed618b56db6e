"""``realnvp``: the conditioner of RealNVP's official code (Dinh et al. 2017, arXiv:1605.08803;
tensorflow/models ``research/real_nvp/real_nvp_multiscale_dataset.py`` ``resnet`` and
``residual_block``; the PyTorch port chrischute/real-nvp ``models/resnet``)::

    h    = relu([d bn(x), -d bn(x)])                  d = 2 (double) or 1; bn with a gain and bias
    h    = conv3x3(h) ;  skip = conv1x1(h)
    B times:  h = h + conv3x3(relu(bn(conv3x3'(relu(bn(h))))))      (conv3x3': no bias)
              skip = skip + conv1x1(h)
    out  = conv1x1(relu(bn(skip)))

Every conv is weight-normalised, ``W = g v / ||v||`` per output channel with ``g`` starting at
``||v||`` (Salimans & Kingma 2016, arXiv:1602.07868), and the batch norms act on top of it, as in
the official blocks. ``zero_init`` starts the output conv at zero (``g = 0``, bias 0); the official
code does not (its tanh scale starts at 0 instead: ``affine`` ``scale: tanh``). The context, if any,
enters with ``x`` before the input batch norm. Batch norm uses the batch's statistics in training
and running averages in evaluation; the coupling's log-det is exact either way.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import ConditionerConfig, NetCost, register_conditioner, with_context
from flowspec.layers.conditioners.resnet import WeightNormConv2d


@register_conditioner
class RealNVPConditioner(ConditionerConfig):
    kind: Literal["realnvp"] = "realnvp"
    hidden: PositiveInt = Field(64, description="H, channels of the residual blocks")
    blocks: Annotated[int, Field(ge=1, le=64)] = Field(4, description="B, residual blocks (RealNVP on CIFAR-10: 8)")
    double: bool = Field(True, description="double the batch-normalised input (the official code; the port "
                                           "doubles on checkerboard couplings only)")
    zero_init: bool = True

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        return RealNVPResNet(in_channels + context, out_channels, self.hidden, self.blocks, self.double,
                             self.zero_init)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int, bool]]:
        """(in, out, kernel, bias) of every conv, in call order."""
        h, cin = self.hidden, in_channels + context
        out = [(2 * cin, h, 3, True), (h, h, 1, True)]
        out += [(h, h, 3, False), (h, h, 3, True), (h, h, 1, True)] * self.blocks
        return out + [(h, out_channels, 1, True)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Per example: the convs' ``i o k^2`` weights, their biases and their ``g`` (``o`` each);
        ``2B + 2`` batch norms (``2`` params per channel, counted as 4 FLOPs per element); the
        input's negation and doubling, the residual and skip sums (1 FLOP per element each); the
        elements backward keeps per example and, for the computed weights, per call (measured
        against the saved tensors)."""
        layers = self.convs(in_channels, out_channels, context)
        h, cin, b = self.hidden, in_channels + context, self.blocks
        params = sum(i * o * k * k + o * (2 if bias else 1) for i, o, k, bias in layers)
        params += 2 * cin + 2 * h * (2 * b + 1)
        norm_elements = (cin + h * (2 * b + 1)) * spatial
        elementwise = 4.0 * norm_elements + 3.0 * cin * spatial + 2.0 * b * h * spatial
        # kept for backward, per pixel: the input (batch norm) and [x, -x] after the ReLU (3 cin);
        # the first conv's output (H); per block its ReLU outputs, the inner conv's output and the
        # block's output (4 H); the skip sum and its ReLU (2 H); the output (out)
        kept = (3 * cin + (4 * b + 3) * h + out_channels) * spatial
        # once per call: each weight-normed conv's computed weight g v / ||v|| and its norms, each batch
        # norm's mean and inverse std
        per_call = sum(i * o * k * k + 2 * o for i, o, k, _ in layers) + 2 * (cin + h * (2 * b + 1))
        return NetCost(params=params, matmul_flops=sum(2.0 * i * o * k * k * spatial for i, o, k, _ in layers),
                       outputs=kept, call_outputs=per_call,
                       layers=len(layers), elementwise=elementwise, extra_ops=4 * len(layers) + 2 * b + 4)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, k, spatial) for i, o, k, _ in self.convs(in_channels, out_channels, context)]

    def narrow(self, width: int) -> "RealNVPConditioner":
        return self.model_copy(update={"hidden": min(self.hidden, width)})


class RealNVPBlock(nn.Module):
    """``h + conv3x3(relu(bn(conv3x3'(relu(bn(h))))))``, both convs weight-normalised."""

    def __init__(self, hidden: int):
        super().__init__()
        self.in_norm = nn.BatchNorm2d(hidden)
        self.in_conv = WeightNormConv2d(hidden, hidden, 3, bias=False)
        self.out_norm = nn.BatchNorm2d(hidden)
        self.out_conv = WeightNormConv2d(hidden, hidden, 3)

    def forward(self, h: Tensor) -> Tensor:
        inner = self.in_conv(torch.relu(self.in_norm(h)))
        return h + self.out_conv(torch.relu(self.out_norm(inner)))


class RealNVPResNet(nn.Module):
    def __init__(self, cin: int, cout: int, hidden: int, blocks: int, double: bool, zero_init: bool):
        super().__init__()
        self.factor = 2.0 if double else 1.0
        self.in_norm = nn.BatchNorm2d(cin)
        self.in_conv = WeightNormConv2d(2 * cin, hidden, 3)
        self.in_skip = WeightNormConv2d(hidden, hidden, 1)
        self.blocks = nn.ModuleList(RealNVPBlock(hidden) for _ in range(blocks))
        self.skips = nn.ModuleList(WeightNormConv2d(hidden, hidden, 1) for _ in range(blocks))
        self.out_norm = nn.BatchNorm2d(hidden)
        self.out_conv = WeightNormConv2d(hidden, cout, 1)
        if zero_init:
            with torch.no_grad():
                self.out_conv.g.zero_()
                self.out_conv.bias.zero_()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.in_norm(with_context(x, context)) * self.factor
        h = self.in_conv(torch.relu(torch.cat([h, -h], dim=1)))
        skip = self.in_skip(h)
        for block, to_skip in zip(self.blocks, self.skips):
            h = block(h)
            skip = skip + to_skip(h)
        return self.out_conv(torch.relu(self.out_norm(skip)))
