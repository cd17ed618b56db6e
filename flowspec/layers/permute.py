"""Fixed channel permutation (RealNVP / NICE): ``y = x[perm]``, ``x = y[perm^{-1}]``, ``logdet = 0``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from flowspec.errors import RuleViolation
from flowspec.layers.base import ContextShape, FlowLayer, LayerConfig, LayerCost, Shape, register, zeros_like_batch


@register
class PermuteConfig(LayerConfig):
    kind: Literal["permute"] = "permute"
    order: Literal["reverse", "shuffle"] = "reverse"
    seed: int = 0

    def output_shape(self, shape: Shape) -> Shape:
        if shape[0] < 2:
            raise RuleViolation("permute needs at least 2 channels", hint="squeeze first")
        return shape

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        return LayerCost(ops=3)  # gather, zero log-det, add

    def permutation(self, channels: int) -> Tensor:
        """``perm``: output channel ``i`` is input channel ``perm[i]``."""
        if self.order == "reverse":
            return torch.arange(channels - 1, -1, -1)
        return torch.randperm(channels, generator=torch.Generator().manual_seed(self.seed))

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, None]:
        return marks[self.permutation(shape[0]).numpy()], None

    def build(self, shape: Shape, context: ContextShape = None) -> "Permute":
        return Permute(self.permutation(shape[0]))


class Permute(FlowLayer):
    def __init__(self, perm: Tensor):
        super().__init__()
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], zeros_like_batch(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y[:, self.inverse_perm], zeros_like_batch(y)
