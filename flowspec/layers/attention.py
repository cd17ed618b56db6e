"""The pre-norm transformer block that the causal-transformer (TarFlow) and ViT (Jet) conditioners
share, and the key-value cache of causal decoding (Vaswani et al. 2017, arXiv:1706.03762)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KVCache:
    """Keys and values of the tokens decoded so far, one preallocated ``(B, heads, N, C / heads)``
    pair per layer, and how many tokens they hold."""

    def __init__(self, layers: int, batch: int, heads: int, tokens: int, head_width: int, like: Tensor):
        shape = (batch, heads, tokens, head_width)
        self.keys = [like.new_zeros(shape) for _ in range(layers)]
        self.values = [like.new_zeros(shape) for _ in range(layers)]
        self.length = 0
        self.context: Tensor | None = None  # the context's projection W h, computed at the first step

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class AttentionBlock(nn.Module):
    """``a + D(Attn(LN(a)))`` then ``+ D(MLP(LN(a)))`` (GELU, ``mlp`` hidden units), pre-norm; causal
    (TarFlow's conditioner) or not (Jet's ViT). ``D`` is residual dropout of probability
    ``dropout`` in training (GPT-2's placement), the identity in eval mode."""

    def __init__(self, width: int, heads: int, mlp: int, causal: bool = True, dropout: float = 0.0):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def _qkv(self, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, c = a.shape
        q, k, v = self.qkv(self.attention_norm(a)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v  # (B, heads, T, C / heads) each

    def _finish(self, a: Tensor, attended: Tensor) -> Tensor:
        b, _, t, _ = attended.shape
        a = a + self.dropout(self.proj(attended.transpose(1, 2).reshape(b, t, -1)))
        return a + self.dropout(self.mlp(self.mlp_norm(a)))

    @staticmethod
    def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """``softmax(q k^T / sqrt(d) + mask) v``, as two matmuls (so torch's FlopCounterMode counts
        them on every device, as the cost rule does)."""
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1) @ v

    def forward(self, a: Tensor) -> Tensor:
        q, k, v = self._qkv(a)
        t = a.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=a.device).tril() if self.causal else None
        return self._finish(a, self.attend(q, k, v, causal))

    def step(self, a: Tensor, cache: KVCache, index: int) -> Tensor:
        """``a``: ``(B, T, C)`` new tokens at ranks ``cache.length ..``; their keys and values join the
        cache, and each attends to every cached token up to itself."""
        q, k, v = self._qkv(a)
        start, t = cache.length, a.shape[1]
        keys, values = cache.keys[index], cache.values[index]
        keys[:, :, start:start + t] = k
        values[:, :, start:start + t] = v
        mask = None
        if t > 1:  # several new tokens: causal among themselves
            mask = torch.ones(t, start + t, dtype=torch.bool, device=a.device).tril(start)
        return self._finish(a, self.attend(q, keys[:, :, :start + t], values[:, :, :start + t], mask))
