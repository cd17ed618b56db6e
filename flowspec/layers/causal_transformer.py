r"""The ``causal_transformer`` autoregressive conditioner (TarFlow, Zhai et al. 2024, "Normalizing
Flows are Capable Generative Models", arXiv:2412.06329).

Tokens ``x_1 .. x_N`` (``D`` channels each; a vector's entries are tokens of one channel) are read in
the layer's order ``pi``. With ``a^0_k = E x_{pi(k)} + P_{pi(k)} + W h`` (a linear token embedding,
a learned or sinusoidal position embedding of the token's place, and the context features ``h``
added to every token), ``L`` pre-norm layers

    ``a <- a + Attn(LN(a))`` (causal: rank ``k`` attends to ranks ``<= k``),  ``a <- a + MLP(LN(a))``

and an output layer ``o_k = O a^L_k``, the parameters of the token of rank ``k`` are
``theta_{pi(k)} = o_{k-1}`` (shift by one; ``theta_{pi(1)} = 0``): they read the tokens of ranks
``< k`` only, so the layer's Jacobian is block-triangular in the order.

Sampling reads the same network one token at a time: :meth:`CausalTransformer.step` appends the
new token's keys and values to a cache (``2 L N`` width-vectors per example) and attends over it,
so decoding ``N`` tokens costs one pass, not ``N``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.attention import AttentionBlock, KVCache
from flowspec.layers.autoregressive import ARConditionerConfig, register_ar_conditioner
from flowspec.layers.base import LayerCost, MatmulOp


def sinusoidal_positions(tokens: int, width: int) -> Tensor:
    """``P[n, 2i] = sin(n / 10000^(2i / C))``, ``P[n, 2i + 1] = cos(...)`` (Vaswani et al. 2017)."""
    position = torch.arange(tokens, dtype=torch.float64)[:, None]
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(tokens, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : width // 2]
    return table.float()


class CausalTransformer(nn.Module):
    r"""``(x, h) -> (batch, outputs, N[, D])``: the parameters of token ``i`` read tokens ``j`` with
    ``degrees[j] < degrees[i]`` only (and the context ``h`` freely, but for the first token, whose
    parameters are 0)."""

    def __init__(self, tokens: int, channels: int, outputs: int, width: int, layers: int, heads: int,
                 expansion: int, position: str, context: int, degrees: Tensor, dropout: float = 0.0):
        super().__init__()
        self.tokens, self.channels, self.outputs, self.heads = tokens, channels, outputs, heads
        degrees = torch.as_tensor(degrees)
        if sorted(degrees.tolist()) != list(range(1, tokens + 1)):
            raise ValueError(f"degrees must be a permutation of 1..{tokens}, got {degrees.tolist()}")
        self.register_buffer("degrees", degrees.clone())
        self.register_buffer("order", torch.argsort(degrees))  # order[k]: the token of rank k + 1
        self.embed = nn.Linear(channels, width)
        if position == "learned":
            self.position = nn.Parameter(0.02 * torch.randn(tokens, width))
        else:
            self.register_buffer("position", sinusoidal_positions(tokens, width))
        self.context = nn.Linear(context, width, bias=False) if context else None
        self.blocks = nn.ModuleList(AttentionBlock(width, heads, expansion * width, dropout=dropout)
                                    for _ in range(layers))
        self.out = nn.Linear(width, outputs * channels)  # the layer zeroes it (a fresh block: the identity)

    def _tokens(self, x: Tensor) -> Tensor:
        return x.unsqueeze(-1) if x.dim() == 2 else x

    def _embed(self, tokens: Tensor, ranks: slice, h: Tensor | None, cache: KVCache | None = None) -> Tensor:
        a = self.embed(tokens) + self.position[self.order[ranks]]
        if self.context is not None and h is not None:
            if cache is None:
                return a + self.context(h)[:, None]
            if cache.context is None:
                cache.context = self.context(h)[:, None]
            a = a + cache.context
        return a

    def _params(self, out: Tensor, vector: bool) -> Tensor:
        """``(B, T, P D)`` outputs -> ``(B, P, T[, D])`` transform parameters."""
        b, t, _ = out.shape
        params = out.view(b, t, self.outputs, self.channels).permute(0, 2, 1, 3)
        return params.squeeze(-1) if vector else params

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        vector = x.dim() == 2
        a = self._embed(self._tokens(x)[:, self.order], slice(None), h)
        for block in self.blocks:
            a = block(a)
        out = self.out(a)
        shifted = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], dim=1)  # rank k reads ranks < k
        return self._params(shifted[:, torch.argsort(self.order)], vector)

    # -- decoding one token (or block) at a time -----------------------------------------------
    def start(self, batch: int, like: Tensor) -> KVCache:
        width = self.embed.out_features
        return KVCache(len(self.blocks), batch, self.heads, self.tokens, width // self.heads, like)

    def step(self, x_ranked: Tensor, cache: KVCache, h: Tensor | None = None) -> Tensor:
        """``x_ranked``: the tokens of ranks ``cache.length + 1 ..`` (``(B, T[, D])``, in rank order);
        returns the parameters of the tokens of ranks ``cache.length + 2 ..`` (``(B, P, T[, D])``),
        each reading the cache and the new tokens up to itself, and extends the cache."""
        vector = x_ranked.dim() == 2
        start, t = cache.length, x_ranked.shape[1]
        a = self._embed(self._tokens(x_ranked), slice(start, start + t), h, cache)
        for index, block in enumerate(self.blocks):
            a = block.step(a, cache, index)
        cache.length += t
        return self._params(self.out(a), vector)


@register_ar_conditioner
class CausalTransformerConditioner(ARConditionerConfig):
    """``causal_transformer``: ``layers`` pre-norm blocks of causal self-attention (``heads`` heads)
    and an MLP (``expansion`` x ``width``) over the tokens in the order, a linear token embedding,
    a ``learned`` or ``sinusoidal`` position embedding, the context added to every token, an
    output shifted by one token (the tarflow layer starts it at zero); ``dropout`` on each
    residual branch in training."""

    kind: Literal["causal_transformer"] = "causal_transformer"
    width: PositiveInt = Field(64, description="the transformer's width C (token embedding size)")
    layers: Annotated[int, Field(ge=1, le=64)] = Field(2, description="attention + MLP layers")
    heads: Annotated[int, Field(ge=1, le=256)] = Field(1, description="attention heads; they must divide width")
    expansion: Annotated[int, Field(ge=1, le=16)] = Field(4, description="MLP hidden width / width")
    position: Literal["learned", "sinusoidal"] = Field("learned", description="position embedding")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="residual dropout after each attention and MLP (training only)")

    def random_field(self) -> tuple | None:
        return ("dropout",) if self.dropout > 0 else None

    def heads_problem(self) -> str | None:
        """A sentence when ``heads`` does not divide ``width``, else None."""
        if self.width % self.heads:
            return f"heads {self.heads} does not divide width {self.width}"
        return None

    def linears(self, tokens: int, channels: int, outputs: int, context: int) -> list[tuple[int, int, int]]:
        """``(in, out, rows)`` of every linear of one pass, ``rows`` the vectors it maps per example."""
        c, e = self.width, self.expansion * self.width
        layer = [(c, 3 * c, tokens), (c, c, tokens), (c, e, tokens), (e, c, tokens)]
        out = [(channels, c, tokens)] + layer * self.layers + [(c, outputs * channels, tokens)]
        return out + ([(context, c, 1)] if context else [])

    def attention_flops(self, tokens: int) -> float:
        """``QK^T`` and ``AV`` of every layer, per example: ``2 N^2 C`` each (the full square, as
        the causal kernel is timed and counted)."""
        return self.layers * 2 * (2.0 * tokens * tokens * self.width)

    def cached_matmul_flops(self, tokens: int, channels: int, outputs: int, context: int) -> float:
        """Matmul FLOPs of a KV-cached decode of ``N`` tokens, per example: the ``N - 1`` tokens
        whose outputs a later token needs go through every linear once, the context's projection
        runs once, and the token of rank ``t`` attends to ``t`` cached keys (``4 t C`` per layer)."""
        per_token = sum(2.0 * i * o for i, o, rows in self.linears(tokens, channels, outputs, 0))
        attention = self.layers * 2.0 * self.width * tokens * (tokens - 1)
        return (tokens - 1) * per_token + attention + (2.0 * context * self.width if context else 0.0)

    def kv_cache_elements(self, tokens: int) -> int:
        """Keys and values of every layer for ``N`` tokens: ``2 L N C`` per example."""
        return 2 * self.layers * tokens * self.width

    def cost_tokens(self, tokens: int, channels: int, outputs: int, context: int) -> LayerCost:
        """One pass over ``N`` tokens of ``D`` channels: the linears (``2 i o`` per row), the
        attention's two ``N x N`` products, layer norms, GELUs and softmaxes."""
        c, n, e = self.width, tokens, self.expansion * self.width
        linears = self.linears(tokens, channels, outputs, context)
        dense = linears[:-1] if context else linears  # the context's linear has no bias
        params = sum(i * o + o for i, o, _ in dense) + context * c
        params += 4 * c * self.layers + (n * c if self.position == "learned" else 0)  # layer norms, positions
        matmul = sum(2.0 * i * o * rows for i, o, rows in linears) + self.attention_flops(n)
        elementwise = self.layers * (2 * 8.0 * n * c + 8.0 * n * e + 5.0 * self.heads * n * n) + 2.0 * n * c
        activations = self.layers * (2 * n * c + 3 * n * c + self.heads * n * n + n * c + 2 * n * e + n * c) \
            + n * c + n * outputs * channels
        return LayerCost(params=params, flops_forward=matmul + elementwise, matmul_flops_forward=matmul,
                         activations=activations, ops=6 + 18 * self.layers + (2 if context else 0))

    def cost(self, features, outputs: int, context: int) -> LayerCost:
        tokens, channels = (features, 1) if isinstance(features, int) else features
        return self.cost_tokens(tokens, channels, outputs, context)

    def matmul_ops(self, features, outputs: int, context: int) -> list[MatmulOp]:
        tokens, channels = (features, 1) if isinstance(features, int) else features
        # a linear over N tokens is timed as a 1x1 conv over an N x 1 map (the same 2 i o N FLOPs)
        return [MatmulOp(i, o, 1, (rows, 1) if rows > 1 else ())
                for i, o, rows in self.linears(tokens, channels, outputs, context)]

    def narrow(self, width: int) -> "CausalTransformerConditioner":
        narrow = min(self.width, width)
        heads = max(h for h in range(1, min(self.heads, narrow) + 1) if narrow % h == 0)
        return self.model_copy(update={"width": narrow, "heads": heads})

    def build(self, features, outputs: int, context: int, degrees: Tensor) -> CausalTransformer:
        tokens, channels = (features, 1) if isinstance(features, int) else features
        return CausalTransformer(tokens, channels, outputs, self.width, self.layers, self.heads, self.expansion,
                                 self.position, context, degrees, self.dropout)
