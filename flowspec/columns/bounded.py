r"""``bounded: [lo, hi]``: a column whose values lie in the open interval ``(lo, hi)``, mapped to the
real line by a scaled logit (as RealNVP's logit preprocessing, Dinh et al. 2017, arXiv:1605.08803).

forward:  ``p = (x - lo) / (hi - lo)``, ``y = log p - log(1 - p)``
inverse:  ``x = lo + (hi - lo) sigmoid(y)``
log-det:  ``-log(hi - lo) - log p - log(1 - p)``

The density it gives ``x`` integrates to 1 over ``(lo, hi)``. A value at a bound has no finite
image: the loaders refuse it (widen the bounds a little if the data reach them).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field
from torch import Tensor

from flowspec.columns._logit import logit_of_unit, sigmoid_of_real
from flowspec.columns.base import ColumnConfig, ColumnTransform, Interval, register_column


@register_column
class BoundedColumn(ColumnConfig):
    kind: Literal["bounded"] = "bounded"
    # shift, scale, clamp, log, log1p, subtract, two softplus (3 each), add; inverse: sigmoid (4),
    # two softplus, scale and shift
    flops = (12.0, 12.0)
    bounds: Interval = Field(description="[lo, hi]: values lie strictly between them")

    def valid(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self.bounds
        return (values > lo) & (values < hi)

    def problem(self, value: float) -> str:
        lo, hi = self.bounds
        return f"{value:g} is outside the open interval ({lo:g}, {hi:g}) of a bounded column"

    def build(self, n: int) -> "ScaledLogit":
        return ScaledLogit(*self.bounds)


class ScaledLogit(ColumnTransform):
    def __init__(self, lo: float, hi: float):
        super().__init__()
        self.lo, self.width = lo, hi - lo

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = logit_of_unit((v - self.lo) / self.width)
        return y, logdet - math.log(self.width)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        p, logdet = sigmoid_of_real(y)
        return self.lo + self.width * p, logdet + math.log(self.width)
