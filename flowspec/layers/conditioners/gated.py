"""``gated``: Flow++'s conditioner (Ho et al. 2019, arXiv:1902.00275, sec. 3.3 and its code):

    h = conv3x3(x) ; p = a learned position embedding (hidden, H, W)
    B times:  h = h + gate(conv1x1(dropout(concat_elu(conv3x3(concat_elu(h))))))    gated conv
              h = layernorm(h)
              h = h + gate(conv1x1(dropout(attention(conv1x1(h + p)))))                 self-attention
              h = layernorm(h)
    out = conv3x3(h), zero-initialised

with ``gate([a, b]) = a * sigmoid(b)`` (the 1x1 conv before it doubles the channels),
``concat_elu(h) = elu([h, -h])``, layer norm over the channels of each pixel (with a gain and a
bias per channel), and multi-head dot-product self-attention over the ``H W`` pixels: ``heads``
heads of ``hidden / heads`` channels, ``softmax(q k^T / sqrt(d)) v``. Dropout ``p`` acts in
training only. The context, if any, enters as extra input channels of the first conv.

Attention costs ``4 (HW)^2 hidden`` FLOPs per block and keeps ``heads (HW)^2`` weights per
example for the backward pass: at CIFAR's 32 x 16 half-images, 262k per block; the report counts
both. Dropout draws new masks on every call: with ``memory.invertible_backprop`` the re-run of a
layer would draw other masks than its forward did, so validate refuses dropout > 0 there.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import Tensor, nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import (ConditionerConfig, NetCost, register_conditioner, stack_cost,
                                               with_context, zero_init)


@register_conditioner
class GatedConditioner(ConditionerConfig):
    kind: Literal["gated"] = "gated"
    hidden: PositiveInt = Field(96, description="channels of the blocks")
    blocks: Annotated[int, Field(ge=1, le=64)] = Field(2, description="B, gated conv + attention blocks")
    heads: PositiveInt = Field(4, description="attention heads; must divide hidden")
    dropout: float = Field(0.0, description="dropout probability p in [0, 1) (training only)",
                           json_schema_extra={"minimum": 0, "exclusiveMaximum": 1})
    zero_init: bool = True

    @field_validator("dropout")
    @classmethod
    def _probability(cls, dropout: float) -> float:
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        return dropout

    @model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden % self.heads:
            divisors = [d for d in range(1, self.hidden + 1) if self.hidden % d == 0 and d <= 4 * self.heads]
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden}); divisors of "
                             f"{self.hidden}: {', '.join(map(str, divisors[-6:]))}")
        return self

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        raise TypeError("a gated conditioner learns a position embedding per pixel: build it with build_at")

    def build_at(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> nn.Module:
        return GatedAttentionNet(in_channels + context, out_channels, tuple(spatial), self.hidden, self.blocks,
                                 self.heads, self.dropout, self.zero_init)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        f = self.hidden
        block = [(2 * f, f, 3), (2 * f, 2 * f, 1), (f, 3 * f, 1), (f, 2 * f, 1)]
        return [(in_channels + context, f, 3)] + block * self.blocks + [(f, out_channels, 3)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Per example over ``T = spatial`` pixels: the convs' ``sum(i o k^2 + o)`` params and
        ``sum(2 i o k^2 T)`` FLOPs; the position embedding (``hidden T``) and two layer norms per
        block (``2 hidden`` each) as params; attention's two matmuls ``4 T^2 hidden`` FLOPs per block
        (torch's counter sees them) and its ``heads T^2`` weights kept per block (with ~``18 hidden T``
        more kept for the backward pass: concat_elu, gates, layer norms; measured); the
        elementwise rest (concat_elu, gates, layer norms, residuals, softmax) ~``40 hidden T + 5
        heads T^2`` per block."""
        f, t = self.hidden, spatial
        net = stack_cost(self.convs(in_channels, out_channels, context), spatial)
        attention = 4.0 * t * t * f * self.blocks
        return net._replace(params=net.params + f * t + 4 * f * self.blocks,
                            matmul_flops=net.matmul_flops + attention,
                            outputs=net.outputs + self.blocks * (self.heads * t * t + 18 * f * t),
                            elementwise=self.blocks * (40.0 * f * t + 5.0 * self.heads * t * t) + f * t,
                            extra_ops=30 * self.blocks + 1)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        """The convs (attention's batched matmuls are counted in the FLOPs, not timed as convs)."""
        return [MatmulOp(i, o, k, spatial) for i, o, k in self.convs(in_channels, out_channels, context)]

    def random_field(self) -> tuple | None:
        return ("dropout",) if self.dropout > 0 else None

    def narrow(self, width: int) -> "GatedConditioner":
        hidden = min(self.hidden, width)
        heads = max(d for d in range(1, min(self.heads, hidden) + 1) if hidden % d == 0)
        return self.model_copy(update={"hidden": hidden, "heads": heads})


def concat_elu(h: Tensor) -> Tensor:
    return F.elu(torch.cat([h, -h], dim=1))


def gate(h: Tensor) -> Tensor:
    a, b = h.chunk(2, dim=1)
    return a * torch.sigmoid(b)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of each pixel, ``(h - mean) / sqrt(var + 1e-5) * g + b``."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, h: Tensor) -> Tensor:
        mean = h.mean(dim=1, keepdim=True)
        var = (h - mean).pow(2).mean(dim=1, keepdim=True)
        return (h - mean) * torch.rsqrt(var + 1e-5) * self.gain + self.bias


class GatedBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.conv = nn.Conv2d(2 * hidden, hidden, 3, padding=1)
        self.conv_gate = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.norm_conv = ChannelLayerNorm(hidden)
        self.qkv = nn.Conv2d(hidden, 3 * hidden, 1)
        self.attention_gate = nn.Conv2d(hidden, 2 * hidden, 1)
        self.norm_attention = ChannelLayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def attend(self, h: Tensor) -> Tensor:
        b, c, height, width = h.shape
        d = c // self.heads
        q, k, v = self.qkv(h).view(b, 3, self.heads, d, height * width).unbind(1)  # (b, heads, d, T)
        weights = torch.softmax(torch.matmul(q.transpose(-1, -2), k) / math.sqrt(d), dim=-1)  # (b, heads, T, T)
        out = torch.matmul(v, weights.transpose(-1, -2))  # (b, heads, d, T)
        return out.reshape(b, c, height, width)

    def forward(self, h: Tensor, position: Tensor) -> Tensor:
        h = h + gate(self.conv_gate(self.dropout(concat_elu(self.conv(concat_elu(h))))))
        h = self.norm_conv(h)
        h = h + gate(self.attention_gate(self.dropout(self.attend(h + position))))
        return self.norm_attention(h)


class GatedAttentionNet(nn.Module):
    def __init__(self, cin: int, cout: int, spatial: tuple, hidden: int, blocks: int, heads: int, dropout: float,
                 zero: bool):
        super().__init__()
        self.first = nn.Conv2d(cin, hidden, 3, padding=1)
        self.position = nn.Parameter(0.01 * torch.randn(1, hidden, *spatial))
        self.blocks = nn.ModuleList(GatedBlock(hidden, heads, dropout) for _ in range(blocks))
        self.last = nn.Conv2d(hidden, cout, 3, padding=1)
        if zero:
            zero_init(self.last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.first(with_context(x, context))
        for block in self.blocks:
            h = block(h, self.position)
        return self.last(h)
