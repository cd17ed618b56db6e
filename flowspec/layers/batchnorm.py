"""Batch normalisation as a bijector (RealNVP, Dinh et al. 2017, arXiv:1605.08803, sec. 3.7):

forward:  ``y = (x - mu) / sqrt(var + eps) * exp(log_gamma) + beta``   per channel
(``affine: false``: ``log_gamma = beta = 0``, RealNVP's official ``batch_norm_log_diff``)
inverse:  ``x = (y - beta) * exp(-log_gamma) * sqrt(var + eps) + mu``
log-det:  ``H W sum_c (log_gamma_c - log(var_c + eps) / 2)``   (``sum_c`` for vectors)

``(mu, var)`` are the statistics in use: in training, the batch's (mean and biased variance over
the batch and the pixels), and the running averages are updated,
``running = (1 - momentum) running + momentum batch``; in evaluation, the running averages.

What is exact: the log-det is exactly ``log|det|`` of the map *with the statistics in use held
fixed* (in evaluation, the whole map; in training, the map RealNVP's objective uses, the one its
paper's log-det describes). It is not the Jacobian of the batch-coupled map through the
statistics' own dependence on each example (per example, an ``O(1/N)`` correction for a batch of
N; the batch-coupled map's own Jacobian is over all N examples at once). In training the
inverse uses the statistics of this layer's last forward call (the running averages before any),
so ``inverse(forward(x))`` round-trips the same batch exactly; invertible backprop re-runs the
forward from that inversion, and restores the running averages after it (as it does every buffer
of every kind: :mod:`flowspec.compile.invertible_backprop`), so they are updated once per step. Under DDP the batch
statistics are each rank's own (as ``torch.nn.BatchNorm2d``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from flowspec.layers.base import (ContextShape, FlowLayer, LayerConfig, LayerCost, Shape, channel_view, numel,
                                  per_example, register)


@register
class BatchNormConfig(LayerConfig):
    kind: Literal["batchnorm"] = "batchnorm"
    momentum: float = Field(0.05, description="weight of the batch in the running averages, in (0, 1)",
                            json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 1})
    eps: float = Field(1e-5, description="added to the variance", json_schema_extra={"exclusiveMinimum": 0})
    affine: bool = Field(True, description="learn gamma and beta per channel; false: normalise only, as RealNVP's "
                                           "official code (batch_norm_log_diff)")

    @field_validator("momentum")
    @classmethod
    def _in_unit_interval(cls, momentum: float) -> float:
        if not 0 < momentum < 1:
            raise ValueError(f"momentum must be in (0, 1), got {momentum}")
        return momentum

    @field_validator("eps")
    @classmethod
    def _positive(cls, eps: float) -> float:
        if not eps > 0:
            raise ValueError(f"eps must be > 0 (it keeps sqrt(var + eps) away from 0), got {eps}")
        return eps

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        """``2C`` params (none with ``affine: false``); forward in training: mean and variance (~4
        FLOPs per entry), normalise and scale (~3); inverse ~3 per entry; log-det ``~3C`` per call."""
        n = numel(shape)
        return LayerCost(params=2 * shape[0] if self.affine else 0, flops_forward=7 * n, flops_inverse=3 * n,
                         flops_logdet=3 * shape[0], logdet_per_call=True, activations=3 * n, ops=14)

    def build(self, shape: Shape, context: ContextShape = None) -> "BatchNorm":
        return BatchNorm(shape, self.momentum, self.eps, self.affine)


class BatchNorm(FlowLayer):
    def __init__(self, shape: Shape, momentum: float, eps: float, affine: bool = True):
        super().__init__()
        view = channel_view(shape)
        if affine:
            self.log_gamma = nn.Parameter(torch.zeros(view))
            self.beta = nn.Parameter(torch.zeros(view))
        else:  # fixed at gamma = 1, beta = 0
            self.register_buffer("log_gamma", torch.zeros(view))
            self.register_buffer("beta", torch.zeros(view))
        self.register_buffer("running_mean", torch.zeros(view))
        self.register_buffer("running_var", torch.ones(view))
        self.momentum, self.eps = momentum, eps
        self.spatial = numel(shape[1:])
        self._last: tuple[Tensor, Tensor] | None = None  # the statistics of the last training forward

    def _dims(self, x: Tensor) -> list[int]:
        return [0] + list(range(2, x.dim()))

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        mean = x.mean(dim=self._dims(x), keepdim=True)
        var = (x - mean).pow(2).mean(dim=self._dims(x), keepdim=True)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        self._last = (mean.detach(), var.detach())
        return mean, var

    def _logdet(self, var: Tensor, x: Tensor) -> Tensor:
        return per_example(self.spatial * (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum(), x)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self._stats(x)
        y = (x - mean) * torch.rsqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        return y, self._logdet(var, x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and self._last is not None:
            mean, var = self._last
        else:
            mean, var = self.running_mean, self.running_var
        x = (y - self.beta) * torch.exp(-self.log_gamma) * torch.sqrt(var + self.eps) + mean
        return x, -self._logdet(var, y)
