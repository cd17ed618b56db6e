r"""Discrete likelihoods ``p(x|z)`` over the input's levels ``x in {0..n-1}^D``.

All three are normalised over the levels, so ``-log p(x|z)`` is a code length in nats and the
VAE's bits/dim is comparable to a flow's (which includes ``-D log n`` from dequantization).

* ``bernoulli`` (``n = 2``): ``log p = x log sigmoid(l) + (1 - x) log sigmoid(-l)``.
* ``logistic`` -- discretised logistic (Kingma et al. 2016, arXiv:1606.04934; Salimans et al.
  2017, arXiv:1701.05517): with ``c = 2x/(n-1) - 1`` and half bin ``b = 1/(n-1)``,
  ``p(x) = F((c + b - mu)/s) - F((c - b - mu)/s)``, ``F`` the logistic CDF; the edge bins extend
  to -inf (x = 0) and +inf (x = n-1).
* ``categorical``: ``log p = log softmax(logits)[x]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def log_prob(kind: str, params: Tensor, x: Tensor, levels: int) -> Tensor:
    """``log p(x|z)`` summed over the data elements, shape ``(batch,)``; ``params`` has shape
    ``(batch, *x.shape[1:], P)``."""
    return _log_prob_elements(kind, params, x, levels).flatten(1).sum(1)


def _log_prob_elements(kind: str, params: Tensor, x: Tensor, levels: int) -> Tensor:
    if kind == "bernoulli":
        logits = params[..., 0]
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if kind == "categorical":
        return torch.log_softmax(params, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
    if kind == "logistic":
        mu, log_s = params[..., 0], params[..., 1].clamp(min=-7.0)
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
    raise ValueError(f"unknown likelihood {kind!r}")


def sample(kind: str, params: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """A draw of ``x ~ p(x|z)`` in ``{0..n-1}``, as floats of the input's shape."""
    if kind == "bernoulli":
        u = torch.rand(params.shape[:-1], generator=generator, dtype=params.dtype).to(params.device)
        return (u < torch.sigmoid(params[..., 0])).to(params.dtype)
    if kind == "categorical":
        flat = params.reshape(-1, params.shape[-1])
        draws = torch.multinomial(torch.softmax(flat, -1), 1, generator=generator)
        return draws.view(params.shape[:-1]).to(params.dtype)
    u = torch.rand(params.shape[:-1], generator=generator, dtype=params.dtype).to(params.device)
    u = u.clamp(1e-5, 1 - 1e-5)
    y = params[..., 0] + torch.exp(params[..., 1].clamp(min=-7.0)) * (torch.log(u) - torch.log1p(-u))
    return _to_levels(y, levels)


def mode(kind: str, params: Tensor, levels: int) -> Tensor:
    """The most likely level per element (the mean's level for the logistic)."""
    if kind == "bernoulli":
        return (params[..., 0] > 0).to(params.dtype)
    if kind == "categorical":
        return params.argmax(-1).to(params.dtype)
    return _to_levels(params[..., 0], levels)


def _to_levels(y: Tensor, levels: int) -> Tensor:
    return torch.round((y + 1.0) * (levels - 1) / 2.0).clamp(0, levels - 1)
