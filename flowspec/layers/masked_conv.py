r"""The ``masked_conv`` autoregressive conditioner: masked convolutions over the channels and pixels
of a feature map, the IAF of the hierarchical VAE (Kingma et al. 2016, arXiv:1606.04934, sec. 6;
openai/iaf's ``ar_multiconv2d``), MADE's masks (Germain et al. 2015, arXiv:1502.03509) made
convolutional.

Order: pixels in reverse raster order (the last pixel first), channels by their degrees within a
pixel. The variable ``(c, p)`` has degree ``(r(p) - 1) C + d(c)`` with ``r(p) = HW - raster(p)``
(:func:`spatial_degrees`). Each ``k x k`` conv's taps on later raster pixels (rows below, the same
row to the right) read every channel, taps on earlier pixels are zero, and the centre tap is
MADE's channel mask: hidden channel ``u`` of degree ``d(u) = floor(u C / hidden) + 1`` reads input
channel ``j`` iff ``d(u) >= d(j)``, between hidden layers ``d(u') >= d(u)``, and output ``i`` reads
hidden ``u`` iff ``d(i) > d(u)``. So output ``(i, p)`` depends only on variables of lower degree:
the Jacobian is strictly triangular in the order. The context (a vector or a map) is added after
the first layer (directly when it has ``hidden`` channels, else through a 1x1 conv), as openai/iaf
adds the layer's context. Every conv is weight-normalised with data-dependent init
(:mod:`flowspec.layers.weightnorm`).

On a vector ``(B, D)`` the net sees a ``D x 1 x 1`` map: only the centre taps act, a MADE over the
``D`` entries (degrees ``(D,)``). On a map it is built with degrees ``(C, H, W)`` from
:func:`spatial_degrees`, which the autoregressive layer's inverse walks (``C H W`` passes).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.core.fields import ODD_KERNEL
from flowspec.layers.autoregressive import ARConditionerConfig, register_ar_conditioner
from flowspec.layers.base import LayerCost, MatmulOp
from flowspec.layers.weightnorm import DataInitConv2d, conv_params


def spatial_degrees(channel_degrees: Tensor, height: int, width: int) -> Tensor:
    """Degrees ``(C, H, W)``: pixels in reverse raster order, channels by ``channel_degrees``
    (a permutation of ``1..C``) within a pixel."""
    channels = channel_degrees.numel()
    rank = torch.arange(height * width - 1, -1, -1).view(height, width)  # r(p) - 1
    return rank.unsqueeze(0) * channels + channel_degrees.view(-1, 1, 1)


def conv_mask(out_degrees: Tensor, in_degrees: Tensor, kernel: int, strict: bool) -> Tensor:
    """``(out, in, k, k)``: later pixels all ones, earlier pixels zero, the centre
    ``d_out > d_in`` (``strict``) or ``d_out >= d_in``."""
    centre = kernel // 2
    mask = torch.zeros(len(out_degrees), len(in_degrees), kernel, kernel)
    mask[:, :, centre + 1:, :] = 1
    mask[:, :, centre, centre + 1:] = 1
    relation = out_degrees[:, None] > in_degrees[None, :] if strict else out_degrees[:, None] >= in_degrees[None, :]
    mask[:, :, centre, centre] = relation.float()
    return mask


class MaskedConvNet(nn.Module):
    """``(z, h) -> (B, outputs, C[, H, W])``: ``depth`` masked convs of ``hidden`` channels (ELU),
    the context added after the first, then one masked conv to ``outputs x C`` channels."""

    def __init__(self, channels: int, outputs: int, context: int, degrees: Tensor, hidden: int, depth: int,
                 kernel: int):
        super().__init__()
        degrees = torch.as_tensor(degrees)
        if degrees.dim() == 1:
            channel_degrees = degrees
        else:
            channel_degrees = degrees[:, -1, -1]  # the first pixel in the order holds degrees 1..C
            if not torch.equal(degrees, spatial_degrees(channel_degrees, *degrees.shape[1:])):
                raise ValueError("masked_conv degrees must be spatial_degrees(channel order, H, W)")
        if sorted(channel_degrees.tolist()) != list(range(1, channels + 1)):
            raise ValueError(f"channel degrees must be a permutation of 1..{channels}, got {channel_degrees.tolist()}")
        self.channels, self.outputs = channels, outputs
        self.register_buffer("degrees", degrees.clone())
        hidden_degrees = torch.arange(hidden) * channels // hidden + 1
        layers, previous, cin = [], channel_degrees, channels
        for _ in range(depth):
            layers.append(DataInitConv2d(cin, hidden, kernel, mask=conv_mask(hidden_degrees, previous, kernel, False),
                                         init_scale=1.0))
            previous, cin = hidden_degrees, hidden
        self.hidden_layers = nn.ModuleList(layers)
        self.context = None if context in (0, hidden) else DataInitConv2d(context, hidden, 1, init_scale=1.0)
        self.uses_context = context > 0
        out_degrees = channel_degrees.repeat(outputs)
        self.out = DataInitConv2d(hidden, outputs * channels, kernel, mask=conv_mask(out_degrees, hidden_degrees,
                                                                                     kernel, True), init_scale=1.0)

    def forward(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        vector = z.dim() == 2
        a = self.hidden_layers[0](z[:, :, None, None] if vector else z)
        if self.uses_context and h is not None:
            h = h[:, :, None, None] if h.dim() == 2 else h
            a = a + (h if self.context is None else self.context(h))
        a = F.elu(a)
        for layer in self.hidden_layers[1:]:
            a = F.elu(layer(a))
        out = self.out(a)
        return out.view(z.shape[0], self.outputs, self.channels) if vector else \
            out.view(z.shape[0], self.outputs, self.channels, *z.shape[2:])


@register_ar_conditioner
class MaskedConvConditioner(ARConditionerConfig):
    """The ``masked_conv`` autoregressive conditioner: ``depth`` hidden masked ``kernel x kernel``
    convs of ``hidden`` channels (ELU) over a feature map's pixels and channels (openai/iaf's
    ``ar_multiconv2d``: ``depth: 2``, ``kernel: 3``)."""

    kind: Literal["masked_conv"] = "masked_conv"
    hidden: PositiveInt = 64
    depth: Annotated[int, Field(ge=1, le=8)] = 2
    kernel: Annotated[int, Field(ge=1, le=7, description="odd conv size; 1: a MADE over channels per pixel"),
                      ODD_KERNEL] = 3


    def convs(self, features: int, outputs: int, context: int) -> list[tuple[int, int, int]]:
        """``(in, out, kernel)`` of the net's convs: hidden layers, output, the context's 1x1."""
        h = self.hidden
        layers = [(features if i == 0 else h, h, self.kernel) for i in range(self.depth)]
        layers.append((h, outputs * features, self.kernel))
        if context and context != h:
            layers.append((context, h, 1))
        return layers

    def cost(self, features: int, outputs: int, context: int) -> LayerCost:
        """One pass, per pixel: ``2 i o k^2`` per conv, the weight norm's ``(M v)/||M v||`` once
        per call (``3 i o k^2`` each), ``4`` FLOPs per ELU output and the context's add."""
        convs = self.convs(features, outputs, context)
        matmul = sum(2.0 * i * o * k * k for i, o, k in convs)
        weights = sum(i * o * k * k for i, o, k in convs)
        return LayerCost(params=sum(conv_params(i, o, k) for i, o, k in convs),
                         flops_forward=matmul + 4.0 * self.hidden * self.depth + (self.hidden if context else 0),
                         matmul_flops_forward=matmul, call_flops_forward=3.0 * weights,
                         activations=features + 2 * self.hidden * self.depth, call_activations=2 * weights,
                         ops=6 * len(convs) + 2 * self.depth + (1 if context else 0))

    def matmul_ops(self, features: int, outputs: int, context: int) -> list[MatmulOp]:
        return [MatmulOp(i, o, k, ()) for i, o, k in self.convs(features, outputs, context)]

    def build(self, features: int, outputs: int, context: int, degrees: Tensor) -> MaskedConvNet:
        return MaskedConvNet(features, outputs, context, degrees, self.hidden, self.depth, self.kernel)
