"""Actnorm (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039): a per-channel affine map.

forward:  ``y = (x + b) * exp(log_s)``
inverse:  ``x = y * exp(-log_s) - b``
log-det:  ``H * W * sum(log_s)`` (``sum(log_s)`` for vectors)

Data-dependent init: on the first training batch, ``b = -mean`` and ``exp(log_s) = 1/std`` per
channel, so outputs have zero mean and unit variance. Under ``torch.distributed`` the statistics
are averaged over all ranks, so every rank starts from the same parameters.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from flowspec.layers.base import ContextShape, DataInitialized, FlowLayer, LayerConfig, LayerCost, Shape, channel_view, numel, per_example, register


@register
class ActNormConfig(LayerConfig):
    kind: Literal["actnorm"] = "actnorm"
    data_init: bool = True

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        n = numel(shape)
        return LayerCost(params=2 * shape[0], flops_forward=2 * n, flops_inverse=2 * n,
                         flops_logdet=shape[0], logdet_per_call=True, activations=n,
                         ops=7)  # add, exp, mul; sum, scale, expand; log-det add

    def build(self, shape: Shape, context: ContextShape = None) -> "ActNorm":
        return ActNorm(shape, self.data_init)


class ActNorm(FlowLayer, DataInitialized):
    def __init__(self, shape: Shape, data_init: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel_view(shape)))
        self.log_scale = nn.Parameter(torch.zeros(channel_view(shape)))
        self.spatial = numel(shape[1:])
        self.register_initialized(not data_init)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        mean_sq = (x * x).mean(dim=dims, keepdim=True)
        if dist.is_available() and dist.is_initialized():
            stats = torch.cat([mean, mean_sq])
            dist.all_reduce(stats)
            mean, mean_sq = (stats / dist.get_world_size()).chunk(2)
        std = (mean_sq - mean * mean).clamp_min(0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.mark_initialized()

    def logdet(self, x: Tensor) -> Tensor:
        return per_example(self.spatial * self.log_scale.sum(), x)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and self.pending:
            self.initialize(x)
        return (x + self.bias) * torch.exp(self.log_scale), self.logdet(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._unscale(y), -self.logdet(y)

    def _unscale(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias

    def generate(self, y: Tensor, eps: Tensor | None, temperature: float,
                 context: Tensor | None = None) -> Tensor:
        """Sampling: the inverse without its log-det, which nothing reads."""
        return self._unscale(y)
