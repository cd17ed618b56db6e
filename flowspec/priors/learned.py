"""``prior: learned``: ``N(mu, sigma)`` with ``mu`` and ``log sigma`` learned per entry and
zero-initialised (Glow's learn-top, Kingma & Dhariwal 2018, arXiv:1807.03039)."""

from __future__ import annotations

from typing import Literal

from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.priors.base import GaussianPrior, PriorConfig, gaussian_cost, register_prior


@register_prior
class LearnedPrior(PriorConfig):
    """``log p(z) = sum_d log N(z_d; mu_d, sigma_d)``, ``2 n`` parameters."""

    kind: Literal["learned"] = "learned"

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:
        return gaussian_cost(shape, context, learned=2 * numel(shape))

    def build(self, shape: Shape, context: int = 0) -> GaussianPrior:
        return GaussianPrior(shape, learned=True, context=context, kind=self.kind)
