"""The logit of a value scaled into the unit interval, shared by the interval-valued column kinds."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def logit_of_unit(p: Tensor) -> tuple[Tensor, Tensor]:
    """``y = log p - log(1 - p)`` and ``log|dy/dp| = -log p - log(1 - p) = softplus(y) + softplus(-y)``
    (stable at both ends); ``p`` is clamped to ``[eps, 1 - eps]`` of its dtype, so an end point
    maps to a finite ``y``."""
    eps = torch.finfo(p.dtype).eps
    p = p.clamp(eps, 1 - eps)
    y = torch.log(p) - torch.log1p(-p)
    return y, F.softplus(y) + F.softplus(-y)


def sigmoid_of_real(y: Tensor) -> tuple[Tensor, Tensor]:
    """``p = sigmoid(y)`` and ``log|dp/dy| = -(softplus(y) + softplus(-y))``."""
    return torch.sigmoid(y), -(F.softplus(y) + F.softplus(-y))
