"""``likelihood: logistic``, the discretised logistic (Kingma et al. 2016, arXiv:1606.04934;
Salimans et al. 2017, arXiv:1701.05517): parameters ``(mu, log s)`` per entry; with
``c = 2x/(n-1) - 1`` and half bin ``b = 1/(n-1)``, ``p(x) = F((c + b - mu)/s) - F((c - b - mu)/s)``,
``F`` the logistic CDF; the edge bins extend to -inf (x = 0) and +inf (x = n-1). The mode is the
level nearest ``mu``."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.vae.likelihoods.base import LikelihoodConfig, register_likelihood, to_levels

LOG_SCALE_FLOOR = -7.0


@register_likelihood
class LogisticLikelihood(LikelihoodConfig):
    kind: Literal["logistic"] = "logistic"
    shareable_log_scale: ClassVar[bool] = True

    def params_per_entry(self, levels: int) -> int:
        return 2

    def cost(self, shape: Shape, levels: int) -> LayerCost:
        """Two scaled offsets, three softplus, log-CDF differences, expm1, the tail's density and
        the two selects: 30 FLOPs per entry and the sum; the mode, ``round((y + 1)(n - 1)/2)`` and
        a clamp: 4. It keeps the two parameters, ten float intermediates and three boolean masks
        (a quarter element each) per entry."""
        n = numel(shape)
        return LayerCost(flops_forward=30.0 * n + n, flops_inverse=4.0 * n, activations=2 * n + round(n * 10.75),
                         ops=32)

    def log_prob_elements(self, params: Tensor, x: Tensor, levels: int) -> Tensor:
        mu, log_s = params[..., 0], params[..., 1].clamp(min=LOG_SCALE_FLOOR)
        half = 1.0 / (levels - 1)
        c = x * (2.0 / (levels - 1)) - 1.0
        inv_s = torch.exp(-log_s)
        plus, minus = inv_s * (c + half - mu), inv_s * (c - half - mu)
        log_cdf_plus = plus - F.softplus(plus)  # log F(plus), for the x = 0 bin
        log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - F(minus)), for x = n-1
        # log(F(plus) - F(minus)) = log F(plus) + log(1 - exp(log F(minus) - log F(plus)))
        log_cdf_minus = minus - F.softplus(minus)
        gap = log_cdf_minus - log_cdf_plus
        exact = log_cdf_plus + torch.log(-torch.expm1(gap.clamp(max=-1e-30)))
        # far in the upper tail both log-CDFs round to 0: use density * bin width there
        centre = inv_s * (c - mu)
        log_density = centre - log_s - 2.0 * F.softplus(centre) + math.log(2 * half)
        log_mid = torch.where(gap < 0, exact, log_density)
        return torch.where(x <= 0, log_cdf_plus, torch.where(x >= levels - 1, log_one_minus_cdf_minus, log_mid))

    def sample(self, params: Tensor, levels: int, generator=None) -> Tensor:
        u = torch.rand(params.shape[:-1], generator=generator, dtype=params.dtype).to(params.device)
        u = u.clamp(1e-5, 1 - 1e-5)
        y = params[..., 0] + torch.exp(params[..., 1].clamp(min=LOG_SCALE_FLOOR)) * (torch.log(u) - torch.log1p(-u))
        return to_levels(y, levels)

    def mode(self, params: Tensor, levels: int) -> Tensor:
        return to_levels(params[..., 0], levels)

    def initial_params(self, x: Tensor, levels: int, steps: int = 200) -> Tensor:
        """Maximum-likelihood ``(mu, log s)`` per column of ``x``: start from moment matching
        (``var = s^2 pi^2 / 3``), then Adam on ``(mu, log s)``."""
        scaled = x * (2.0 / (levels - 1)) - 1.0
        spread = scaled.std(0) * math.sqrt(3) / math.pi + 1e-2
        params = torch.stack([scaled.mean(0), torch.log(spread)], -1).requires_grad_(True)
        optimizer = torch.optim.Adam([params], lr=0.05)
        with torch.enable_grad():
            for _ in range(steps):
                nll = -self.log_prob_elements(params.expand(x.shape[0], *params.shape), x, levels).mean()
                optimizer.zero_grad()
                nll.backward()
                optimizer.step()
        return params.detach()
