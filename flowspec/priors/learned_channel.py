"""``prior: learned_channel``: ``N(mu, sigma)`` with one learned, zero-initialised ``(mu, log sigma)``
per channel, shared by the pixels: what Glow's code computes (``model.py`` ``prior``: a
zero-initialised conv of a zero tensor, so only its bias and log-scale reach the output; Kingma &
Dhariwal 2018, arXiv:1807.03039). ``2 C`` parameters."""

from __future__ import annotations

from typing import Literal

from flowspec.core.costs import LayerCost, Shape
from flowspec.layers.base import channel_view
from flowspec.priors.base import GaussianPrior, PriorConfig, gaussian_cost, register_prior


@register_prior
class LearnedChannelPrior(PriorConfig):
    """``log p(z) = sum_{c,h,w} log N(z_chw; mu_c, sigma_c)``."""

    kind: Literal["learned_channel"] = "learned_channel"

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:
        return gaussian_cost(shape, context, learned=2 * shape[0])

    def build(self, shape: Shape, context: int = 0) -> GaussianPrior:
        return GaussianPrior(shape, learned=True, context=context, kind=self.kind, learned_shape=channel_view(shape))
