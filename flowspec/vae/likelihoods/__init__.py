"""Likelihood kinds of a VAE (``likelihood:``), one file each; importing this package registers
them all (:data:`LIKELIHOOD_KINDS`) and builds the spec's :data:`Likelihood` union.

The module functions take a likelihood config (or a registered kind's name, for older callers)."""

from __future__ import annotations

from torch import Tensor

from flowspec.layers.kinds import import_all, kind_union
from flowspec.vae.likelihoods.base import LIKELIHOOD_KINDS, LikelihoodConfig, register_likelihood, scale_levels

import_all(__name__, __path__)

from flowspec.vae.likelihoods.logistic import LogisticLikelihood  # noqa: E402

Likelihood = kind_union(LIKELIHOOD_KINDS, "likelihood")


def _config(likelihood) -> LikelihoodConfig:
    return LIKELIHOOD_KINDS[likelihood]() if isinstance(likelihood, str) else likelihood


def log_prob(likelihood, params: Tensor, x: Tensor, levels: int) -> Tensor:
    """``log p(x|z)`` summed over the data elements, shape ``(batch,)``; ``params`` has shape
    ``(batch, *x.shape[1:], P)``."""
    return _config(likelihood).log_prob(params, x, levels)


def sample(likelihood, params: Tensor, levels: int, generator=None) -> Tensor:
    """A draw of ``x ~ p(x|z)`` in ``{0..n-1}``, as floats of the input's shape."""
    return _config(likelihood).sample(params, levels, generator)


def mode(likelihood, params: Tensor, levels: int) -> Tensor:
    """The most likely level per element (the mean's level for the logistic)."""
    return _config(likelihood).mode(params, levels)


def channel_marginal(likelihood, x: Tensor, levels: int) -> Tensor:
    """The likelihood's ``P`` parameters of each channel's marginal of images ``x`` ``(B, C, H, W)``
    (pixels pooled), shape ``(C, P)``: where a conv decoder's output bias starts."""
    columns = x.transpose(0, 1).reshape(x.shape[1], -1).t()  # (B*H*W, C): one column per channel
    return _config(likelihood).initial_params(columns, levels)


__all__ = ["channel_marginal", "scale_levels", "LIKELIHOOD_KINDS", "Likelihood", "LikelihoodConfig", "LogisticLikelihood", "log_prob", "mode",
           "register_likelihood", "sample"]
