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

Flow++'s code (``flows/flows.py``) as options: ``context_entry: blocks`` feeds the context to every
gated conv through a 1x1 shortcut, ``conv3x3(concat_elu(h)) + conv1x1(concat_elu(c))`` (its
``a_proj``), instead of as extra input channels of the first conv; ``data_init`` gives every conv
Flow++'s data-dependent init (its ``conv2d`` and ``dense``: plain ``W`` and ``b``; the first
training batch rescales each output channel's weights and sets its bias so that the channel has
zero mean and standard deviation ``init_scale``: 1 for the hidden convs, the field ``init_scale``,
Flow++'s 0.1, for the output conv unless ``zero_init`` keeps it at zero; statistics averaged over
ranks under DDP).

Attention costs ``4 (HW)^2 hidden`` FLOPs per block and keeps ``heads (HW)^2`` weights per
example for the backward pass: at CIFAR's 32 x 16 half-images, 262k per block; the report counts
both. Dropout draws new masks on every call: with ``memory.invertible_backprop`` the re-run of a
layer would draw other masks than its forward did, so validate refuses dropout > 0 there.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import Tensor, nn

from flowspec.layers.base import DataInitialized, MatmulOp
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
    context_entry: Literal["input", "blocks"] = Field(
        "input", description="the context as extra input channels of the first conv, or through a 1x1 shortcut "
                             "into every gated conv (Flow++'s a_proj)")
    data_init: bool = Field(False, description="data-dependent init of every conv on the first training batch: "
                                               "each output channel to zero mean, unit std (Flow++)")
    init_scale: Optional[float] = Field(
        None, description="data_init: the output conv's std after the init (Flow++: 0.1); needs zero_init: false",
        json_schema_extra={"exclusiveMinimum": 0})

    @model_validator(mode="after")
    def _init_scale_needs_a_data_init(self):
        if self.init_scale is not None:
            if not self.init_scale > 0:
                raise ValueError(f"init_scale must be > 0, got {self.init_scale}")
            if not self.data_init:
                raise ValueError("init_scale sets the data-dependent init of the output conv; add data_init: true")
            if self.zero_init:
                raise ValueError("init_scale sets the output conv's data-dependent init; zero_init: true keeps it "
                                 "at zero (set zero_init: false)")
        return self

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
        return GatedAttentionNet(in_channels, out_channels, tuple(spatial), self.hidden, self.blocks,
                                 self.heads, self.dropout, self.zero_init, context=context,
                                 context_entry=self.context_entry, data_init=self.data_init,
                                 init_scale=self.init_scale if self.init_scale is not None else 1.0)

    def convs(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, kernel) of every conv, for the cost rule."""
        f = self.hidden
        block = [(2 * f, f, 3), (2 * f, 2 * f, 1), (f, 3 * f, 1), (f, 2 * f, 1)]
        if context and self.context_entry == "blocks":
            return [(in_channels, f, 3)] + ([(2 * context, f, 1)] + block) * self.blocks + [(f, out_channels, 3)]
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
        convs = self.convs(in_channels, out_channels, context)
        net = stack_cost(convs, spatial)
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


class DataInitConv2d(nn.Conv2d, DataInitialized):
    """A conv whose first training call rescales its weights and sets its bias from the batch
    (Flow++'s ``conv2d``, after Salimans & Kingma 2016, arXiv:1602.07868): with ``y = W * x`` and
    per output channel mean ``m`` and variance ``v``, ``W <- W s`` and ``b <- -m s``,
    ``s = init_scale / sqrt(v + 1e-8)``; statistics averaged over ranks under DDP. Until then (and
    in evaluation before any training call) it is the plain conv. Whether it is pending is read
    from a Python mirror of its ``initialized`` buffer (:class:`DataInitialized`), so the check reads
    no tensor: no graph break or data-dependent guard under ``torch.compile``."""

    def __init__(self, cin: int, cout: int, kernel: int, init_scale: float = 1.0):
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        self.init_scale = init_scale
        self.register_initialized(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.pending:
            self._initialize(F.conv2d(x.detach(), self.weight.detach(), padding=self.padding))
        return super().forward(x)

    @torch.no_grad()
    def _initialize(self, h: Tensor) -> None:
        stats = torch.stack([h.mean(dim=(0, 2, 3)), (h * h).mean(dim=(0, 2, 3))])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
            stats /= dist.get_world_size()
        mean, mean_sq = stats
        scale = self.init_scale * torch.rsqrt((mean_sq - mean * mean).clamp_min(0) + 1e-8)
        self.weight.mul_(scale.view(-1, 1, 1, 1))
        self.bias.copy_(-mean * scale)
        self.mark_initialized()


class GatedBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, context: int = 0, data_init: bool = False):
        super().__init__()

        def conv(cin: int, cout: int, kernel: int) -> nn.Module:
            return DataInitConv2d(cin, cout, kernel) if data_init else nn.Conv2d(cin, cout, kernel,
                                                                                padding=kernel // 2)

        self.heads = heads
        self.context_shortcut = conv(2 * context, hidden, 1) if context else None
        self.conv = conv(2 * hidden, hidden, 3)
        self.conv_gate = conv(2 * hidden, 2 * hidden, 1)
        self.norm_conv = ChannelLayerNorm(hidden)
        self.qkv = conv(hidden, 3 * hidden, 1)
        self.attention_gate = conv(hidden, 2 * hidden, 1)
        self.norm_attention = ChannelLayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def attend(self, h: Tensor) -> Tensor:
        b, c, height, width = h.shape
        d = c // self.heads
        q, k, v = self.qkv(h).view(b, 3, self.heads, d, height * width).unbind(1)  # (b, heads, d, T)
        weights = torch.softmax(torch.matmul(q.transpose(-1, -2), k) / math.sqrt(d), dim=-1)  # (b, heads, T, T)
        out = torch.matmul(v, weights.transpose(-1, -2))  # (b, heads, d, T)
        return out.reshape(b, c, height, width)

    def forward(self, h: Tensor, position: Tensor, context: Tensor | None = None) -> Tensor:
        inner = self.conv(concat_elu(h))
        if self.context_shortcut is not None:
            inner = inner + self.context_shortcut(concat_elu(context))
        h = h + gate(self.conv_gate(self.dropout(concat_elu(inner))))
        h = self.norm_conv(h)
        h = h + gate(self.attention_gate(self.dropout(self.attend(h + position))))
        return self.norm_attention(h)


class GatedAttentionNet(nn.Module):
    def __init__(self, cin: int, cout: int, spatial: tuple, hidden: int, blocks: int, heads: int, dropout: float,
                 zero: bool, *, context: int = 0, context_entry: str = "input", data_init: bool = False,
                 init_scale: float = 1.0):
        super().__init__()
        self.shortcut = bool(context) and context_entry == "blocks"
        first_in = cin if self.shortcut else cin + context
        self.first = DataInitConv2d(first_in, hidden, 3) if data_init else nn.Conv2d(first_in, hidden, 3, padding=1)
        self.position = nn.Parameter(0.01 * torch.randn(1, hidden, *spatial))
        self.blocks = nn.ModuleList(GatedBlock(hidden, heads, dropout, context if self.shortcut else 0, data_init)
                                    for _ in range(blocks))
        if data_init:
            self.last = DataInitConv2d(hidden, cout, 3, init_scale)
            if zero:  # starts at zero and stays out of the data-dependent init
                zero_init(self.last)
                self.last.mark_initialized()
        else:
            self.last = nn.Conv2d(hidden, cout, 3, padding=1)
            if zero:
                zero_init(self.last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.shortcut:
            h, context = self.first(x), broadcast_context(context, x)
        else:
            h, context = self.first(with_context(x, context)), None
        for block in self.blocks:
            h = block(h, self.position, context)
        return self.last(h)


def broadcast_context(context: Tensor | None, x: Tensor) -> Tensor | None:
    """A vector context ``(B, E)`` as a map ``(B, E, H, W)`` over ``x``'s pixels; a map as it is."""
    if context is None or context.dim() != 2:
        return context if context is None else context.to(x.dtype)
    return context.to(x.dtype).view(*context.shape, 1, 1).expand(-1, -1, *x.shape[2:])
