"""``prior: logistic``: the factorised standard logistic of NICE (Dinh, Krueger & Bengio 2014,
arXiv:1410.8516, sec. 3.4), ``log p(z) = -sum_d (softplus(z_d) + softplus(-z_d))``, computed with
``softplus`` so it stays finite for large ``|z|``. Mean 0, variance ``pi^2 / 3``. No mean and scale,
so a condition cannot shift it.

Sampling is deterministic in standard normal noise ``eps``, as for every prior: the inverse CDF
``z = T (log u - log(1 - u))`` at ``u = Phi(eps)``, which is ``U(0, 1)``. Taking ``eps`` through
``Phi`` instead of drawing ``u`` here keeps ``generate(eps, T)`` a pure function of the caller's
noise (exportable, reproducible from its generator, ``eps = 0`` the median, ``T`` scaling the
standard deviation as for every prior). ``z`` is odd in ``eps``, so it is computed from the tail
``p = Phi(-|eps|) = erfc(|eps| / sqrt 2) / 2``, which keeps full relative precision where
``1 - Phi`` would cancel: ``z = sign(eps) (log1p(-p) - log p)``. ``p`` is clamped below at the
dtype's smallest normal number, so ``|z|`` saturates at about 87 (float32, ``|eps| > 13``) or 708
(float64, ``|eps| > 37``) instead of reaching infinity. (``log_ndtr(eps) - log_ndtr(-eps)`` is
exact without a clamp but ran 10x slower on the CPU.)
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.priors.base import PriorConfig, register_prior


@register_prior
class LogisticPrior(PriorConfig):
    """The standard logistic per entry, no parameters."""

    kind: Literal["logistic"] = "logistic"
    conditionable: ClassVar[bool] = False

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:
        """``-(softplus(z) + softplus(-z))``: a negation, two softplus of 3 (exp, log1p, threshold
        select), an add and the sum: 9 FLOPs per entry; sampling ``T sign(eps) (log1p(-p) -
        log p)`` with ``p = erfc(|eps| / sqrt 2) / 2`` clamped: abs, scale, erfc, half, clamp,
        log1p, log, subtract, sign, two products: 11 (a special function counted as one FLOP, as
        exp is for the Gaussian)."""
        n = numel(shape)
        return LayerCost(flops_forward=9.0 * n, flops_inverse=11.0 * n, activations=n, ops=7)

    def matmul_ops(self, shape: Shape, context: int = 0) -> list:
        return []

    def build(self, shape: Shape, context: int = 0) -> "Logistic":
        if context:
            raise ValueError("a logistic top prior has no mean and scale to condition")
        return Logistic(shape)


class Logistic(nn.Module):
    kind = "logistic"

    def __init__(self, shape: Shape):
        super().__init__()
        self.shape = tuple(shape)
        # zeros: location and log-scale (also the model's dtype and device reference)
        self.register_buffer("mean", torch.zeros(1, *shape))
        self.register_buffer("log_std", torch.zeros(1, *shape))

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return -(F.softplus(z) + F.softplus(-z)).flatten(1).sum(1)

    def generate(self, eps: Tensor, temperature: float, context: Tensor | None = None) -> Tensor:
        tail = 0.5 * torch.special.erfc(eps.abs() * (1 / math.sqrt(2)))  # Phi(-|eps|)
        tail = tail.clamp_min(torch.finfo(eps.dtype).tiny)
        return temperature * eps.sign() * (torch.log1p(-tail) - torch.log(tail))
