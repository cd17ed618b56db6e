"""``likelihood: bernoulli`` (binarised data, ``levels: 2``): one logit ``l`` per entry,
``log p = x log sigmoid(l) + (1 - x) log sigmoid(-l)``; the mode is ``l > 0``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.vae.likelihoods.base import LikelihoodConfig, register_likelihood


@register_likelihood
class BernoulliLikelihood(LikelihoodConfig):
    kind: Literal["bernoulli"] = "bernoulli"

    def params_per_entry(self, levels: int) -> int:
        return 1

    def problems(self, levels: int) -> list[tuple[str, str]]:
        if levels != 2:
            return [(f"bernoulli needs binarised data (input.levels: 2), got levels {levels}",
                     "use logistic or categorical for more levels")]
        return []

    def cost(self, shape: Shape, levels: int) -> LayerCost:
        """BCE with logits (max, abs, exp, log1p, mul, sub): 6 FLOPs per entry and the sum; the
        mode, a compare; it keeps the logits and the target ``x``."""
        n = numel(shape)
        return LayerCost(flops_forward=6.0 * n + n, flops_inverse=1.0 * n, activations=n + n, ops=5)

    def log_prob_elements(self, params: Tensor, x: Tensor, levels: int) -> Tensor:
        return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")

    def sample(self, params: Tensor, levels: int, generator=None) -> Tensor:
        u = torch.rand(params.shape[:-1], generator=generator, dtype=params.dtype).to(params.device)
        return (u < torch.sigmoid(params[..., 0])).to(params.dtype)

    def mode(self, params: Tensor, levels: int) -> Tensor:
        return (params[..., 0] > 0).to(params.dtype)

    def initial_params(self, x: Tensor, levels: int) -> Tensor:
        """The logit of each column's mean."""
        return torch.logit(x.mean(0).clamp(1e-3, 1 - 1e-3)).unsqueeze(-1)
