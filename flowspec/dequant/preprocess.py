"""The map from dequantized data ``v = x + u in [0, n)^D`` to the model's space, with its log-det.

scale (default):  ``y = v / n - 1/2`` (``- 0`` when not centred), log-det ``-D log n``
logit (RealNVP, Dinh et al. 2017, arXiv:1605.08803, sec. 4.1):
    ``p = alpha + (1 - 2 alpha) v / n``, ``y = logit(p) = log p - log(1 - p)``,
    log-det ``sum_i [log(1 - 2 alpha) - log n - log p_i - log(1 - p_i)]``
inverse (for sampling): ``v = (sigmoid(y) - alpha) n / (1 - 2 alpha)``, resp. ``v = (y + 1/2) n``.

Both log-dets enter the bound ``log P(x) >= E_q[log p(y) + log|dy/dv| - log q(u|x)]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ToModelSpace(nn.Module):
    """``forward(v) -> (y, log|det dy/dv|)``; ``inverse(y) -> v``."""

    def __init__(self, levels: int, centred: bool = True, logit_alpha: float | None = None):
        super().__init__()
        self.levels = levels
        self.centred = centred
        self.alpha = logit_alpha

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        n = self.levels
        if self.alpha is None:
            y = v / n - (0.5 if self.centred else 0.0)
            return y, v.new_full((v.shape[0],), -v[0].numel() * math.log(n))
        a = self.alpha
        p = a + (1 - 2 * a) * v / n
        y = torch.log(p) - torch.log1p(-p)
        # -log p - log(1 - p) = softplus(-y) + softplus(y), stable at both ends
        per_entry = math.log(1 - 2 * a) - math.log(n) + F.softplus(y) + F.softplus(-y)
        return y, per_entry.flatten(1).sum(1)

    def inverse(self, y: Tensor) -> Tensor:
        n = self.levels
        if self.alpha is None:
            return (y + (0.5 if self.centred else 0.0)) * n
        return (torch.sigmoid(y) - self.alpha) * n / (1 - 2 * self.alpha)
