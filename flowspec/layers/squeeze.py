"""Squeeze: space-to-depth, (C, H, W) -> (4C, H/2, W/2) (RealNVP, Dinh et al. 2016, arXiv:1605.08803).

forward: ``y[c*4 + 2i + j, h, w] = x[c, 2h + i, 2w + j]``; inverse: the reverse reshuffle;
``logdet = 0`` (a permutation).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from torch import Tensor

from flowspec.errors import RuleViolation
from flowspec.layers.base import ContextShape, FlowLayer, LayerConfig, LayerCost, Shape, register, zeros_like_batch


@register
class SqueezeConfig(LayerConfig):
    kind: Literal["squeeze"] = "squeeze"
    accepts = "image"
    spatial_factor = 2

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        if h % 2 or w % 2:
            raise RuleViolation(f"squeeze needs even height and width, got {h}x{w}",
                                hint="remove a level or pad the input to an even size")
        return (4 * c, h // 2, w // 2)

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, None]:
        """The forward's reshuffle of the entries."""
        c, h, w = shape
        return marks.reshape(c, h // 2, 2, w // 2, 2).transpose(0, 2, 4, 1, 3).reshape(4 * c, h // 2, w // 2), None

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        return LayerCost(activations=0, ops=4)  # reshape, permute, copy, zeros

    def build(self, shape: Shape, context: ContextShape = None) -> "Squeeze":
        return Squeeze()


class Squeeze(FlowLayer):
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, 4 * c, h // 2, w // 2), zeros_like_batch(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c4, h, w = y.shape
        x = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w), zeros_like_batch(y)
