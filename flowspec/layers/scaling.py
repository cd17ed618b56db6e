"""Diagonal scaling (NICE, Dinh et al. 2014, arXiv:1410.8516, sec. 3.3).

forward: ``y = x * exp(s)`` elementwise; inverse: ``x = y * exp(-s)``; ``logdet = sum(s)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from flowspec.layers.base import ContextShape, FlowLayer, LayerConfig, LayerCost, Shape, numel, per_example, register


@register
class ScalingConfig(LayerConfig):
    kind: Literal["scaling"] = "scaling"

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        n = numel(shape)
        return LayerCost(params=n, flops_forward=n, flops_inverse=n, flops_logdet=n, logdet_per_call=True, activations=n,
                         ops=5)

    def build(self, shape: Shape, context: ContextShape = None) -> "Scaling":
        return Scaling(shape)


class Scaling(FlowLayer):
    def __init__(self, shape: Shape):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, *shape))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * torch.exp(self.log_scale), per_example(self.log_scale.sum(), x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y * torch.exp(-self.log_scale), per_example(-self.log_scale.sum(), y)
