"""``vit``: a Vision Transformer over the kept part's pixels, as Jet computes a coupling's
parameters (Kolesnikov et al. 2024, arXiv:2412.15129, sec. 3, and big_vision's
``models/proj/jet/jet.py``; ViT: Dosovitskiy et al. 2020, arXiv:2010.11929):

    t_i = W_in [x_i, c] + b_in + p_i                      one token per pixel i (after a squeeze,
                                                          a pixel is a patch: Jet needs no patchify)
    N times:  t = t + Attn(LN(t)),  t = t + MLP(LN(t))    pre-norm, non-causal
    out_i = W_out LN(t_i) + b_out,  W_out = b_out = 0     zero-initialised: the coupling starts at
                                                          its transform's zero-parameter map

with ``p`` a learned position embedding (one ``width`` vector per pixel, drawn ``N(0, 1/width)``),
``Attn`` multi-head dot-product self-attention over all ``T = H W`` tokens (``heads`` heads of
``width / heads`` channels, ``softmax(q k^T / sqrt(d)) v``, then an output projection), ``MLP`` a
``width -> mlp -> width`` GELU network (``mlp``: 4 ``width`` by default), and ``LN`` layer norm over a
token's channels with a gain and a bias. The context, if any (a vector broadcast over the tokens
or a map), joins every token's input channels. Jet's own conditional models add the context by a
cross-attention instead; its ImageNet 64 model is unconditional.

Cost per example: the linears ``2 T (in w + 4 w^2 + 2 w mlp + w out)`` FLOPs and attention's
two matmuls ``4 T^2 w`` per layer (torch's FlopCounterMode sees all of them); backward keeps the
``heads T^2`` attention weights of every layer.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from flowspec.layers.attention import AttentionBlock
from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import ConditionerConfig, NetCost, register_conditioner, zero_init


@register_conditioner
class ViTConditioner(ConditionerConfig):
    kind: Literal["vit"] = "vit"
    width: PositiveInt = Field(256, description="w, channels of every token (Jet's emb_dim)")
    depth: Annotated[int, Field(ge=1, le=64)] = Field(1, description="N, transformer layers (Jet's block_depth)")
    heads: PositiveInt = Field(4, description="attention heads; must divide width")
    mlp: Optional[PositiveInt] = Field(None, description="hidden units of each layer's MLP (null: 4 x width)")
    zero_init: bool = True

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.width % self.heads:
            divisors = [d for d in range(1, self.width + 1) if self.width % d == 0 and d <= 4 * self.heads]
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width}); divisors of "
                             f"{self.width}: {', '.join(map(str, divisors[-6:]))}")
        return self

    @property
    def mlp_width(self) -> int:
        return self.mlp if self.mlp is not None else 4 * self.width

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        raise TypeError("a vit conditioner learns a position embedding per pixel: build it with build_at")

    def build_at(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> nn.Module:
        return ViTNet(in_channels + context, out_channels, math.prod(spatial), self.width, self.depth, self.heads,
                      self.mlp_width, self.zero_init)

    def linears(self, in_channels: int, out_channels: int, context: int = 0) -> list[tuple[int, int]]:
        """(in, out) of every linear, applied to each token, for the cost rule."""
        w, m = self.width, self.mlp_width
        layer = [(w, 3 * w), (w, w), (w, m), (m, w)]
        return [(in_channels + context, w)] + layer * self.depth + [(w, out_channels)]

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        """Per example over ``T = spatial`` tokens: the linears' ``sum(i o + o)`` params and
        ``sum(2 i o T)`` FLOPs; the position embedding (``w T``) and ``2 N + 1`` layer norms
        (``2 w`` each) as params; attention's ``4 T^2 w`` FLOPs per layer. Kept for backward per
        layer: the ``heads T^2`` attention weights (the softmax's output) and ``8 w T + 2 mlp T``
        of token maps (the two norms' inputs and outputs, q k v, the attention output, the MLP
        hidden before and after GELU); then the final norm's input and output and the ``out T``
        parameters. The elementwise rest (norms, GELU, softmax, residuals) ~``(12 w + 8 mlp) T +
        5 heads T^2`` FLOPs per layer."""
        w, t, m, n = self.width, spatial, self.mlp_width, self.depth
        linears = self.linears(in_channels, out_channels, context)
        params = sum(i * o + o for i, o in linears) + w * t + 2 * w * (2 * n + 1)
        matmul = sum(2.0 * i * o * t for i, o in linears) + 4.0 * t * t * w * n
        outputs = (2 * w + out_channels) * t + n * (self.heads * t * t + 8 * w * t + 2 * m * t)
        return NetCost(params=params, matmul_flops=matmul, outputs=outputs, layers=len(linears),
                       elementwise=n * ((12.0 * w + 8.0 * m) * t + 5.0 * self.heads * t * t) + 6.0 * w * t,
                       extra_ops=18 * n + 6)

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        """The per-token linears, timed as 1x1 convs over the pixels (attention's batched matmuls are
        counted in the FLOPs, not timed)."""
        return [MatmulOp(i, o, 1, spatial) for i, o in self.linears(in_channels, out_channels, context)]

    def narrow(self, width: int) -> "ViTConditioner":
        narrow = min(self.width, width)
        heads = max(d for d in range(1, min(self.heads, narrow) + 1) if narrow % d == 0)
        return self.model_copy(update={"width": narrow, "heads": heads,
                                       "mlp": None if self.mlp is None else min(self.mlp, 4 * narrow)})


class ViTNet(nn.Module):
    """Image ``(B, C, H, W)`` -> tokens ``(B, H W, C)`` -> transformer -> ``(B, out, H, W)``."""

    def __init__(self, cin: int, cout: int, tokens: int, width: int, depth: int, heads: int, mlp: int,
                 zero: bool = True):
        super().__init__()
        self.embed = nn.Linear(cin, width)
        self.position = nn.Parameter(torch.randn(1, tokens, width) / math.sqrt(width))
        self.layers = nn.ModuleList(AttentionBlock(width, heads, mlp, causal=False) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.last = nn.Linear(width, cout)
        if zero:
            zero_init(self.last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, _, height, width = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, T, C)
        if context is not None:
            c = context.to(x.dtype)
            c = c.unsqueeze(1).expand(-1, t.shape[1], -1) if c.dim() == 2 else c.flatten(2).transpose(1, 2)
            t = torch.cat([t, c], dim=2)
        t = self.embed(t) + self.position
        for layer in self.layers:
            t = layer(t)
        out = self.last(self.norm(t))
        return out.transpose(1, 2).reshape(b, -1, height, width)
