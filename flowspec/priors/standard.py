"""``prior: standard``: ``N(0, I)``; ``log p(z) = -sum_d (z_d^2 + log 2 pi) / 2``. With a
condition (``condition.prior: conditional``) its mean and log-std are shifted by ``W h``."""

from __future__ import annotations

from typing import Literal

from flowspec.core.costs import LayerCost, Shape
from flowspec.priors.base import GaussianPrior, PriorConfig, gaussian_cost, register_prior


@register_prior
class StandardPrior(PriorConfig):
    """``N(0, I)``, no parameters (but the condition's ``W``)."""

    kind: Literal["standard"] = "standard"

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:
        return gaussian_cost(shape, context, learned=0)

    def build(self, shape: Shape, context: int = 0) -> GaussianPrior:
        return GaussianPrior(shape, learned=False, context=context, kind=self.kind)
