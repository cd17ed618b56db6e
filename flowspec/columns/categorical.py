r"""``categorical: K``: a column of category codes ``0 .. K-1``, uniformly dequantized on its ordinal
code (Theis et al. 2016, arXiv:1511.01844) and mapped to the real line by a scaled logit.

dequantize: ``v = k + u``, ``u ~ U[0, 1)``, so ``v`` is in ``[0, K)``
forward:    ``p = v / K``, ``y = log p - log(1 - p)``;  inverse ``v = K sigmoid(y)``, ``k = floor(v)``
log-det:    ``-log K - log p - log(1 - p)``
likelihood: ``log P(k) >= E_u[log p_Y(y) + log-det]``: the dequantized bound, reported in nats.

Why uniform on the ordinal code, not argmax flows (Hoogeboom et al. 2021, arXiv:2102.05379) or
one-hot codes: the column stays one dimension (a one-hot code adds ``K - 1`` dimensions the bound
must pay for), the bound needs no second network, and it is exact as stated. The price: the code's
order is arbitrary, and the flow must place ``K`` separate bumps on one axis; with many unordered
categories an argmax flow would fit better.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from torch import Tensor

from flowspec.columns._logit import logit_of_unit, sigmoid_of_real
from flowspec.columns.base import ColumnConfig, ColumnTransform, register_column


@register_column
class CategoricalColumn(ColumnConfig):
    kind: Literal["categorical"] = "categorical"
    classes: Annotated[int, Field(ge=2, le=1_000_000)] = Field(description="K: codes are 0 .. K-1")
    discrete = True
    flops = (14.0, 14.0)  # the dequantization's add, the scaled logit (see bounded); the floor and clamp

    def valid(self, values: np.ndarray) -> np.ndarray:
        return (values == np.floor(values)) & (values >= 0) & (values < self.classes)

    def problem(self, value: float) -> str:
        return f"{value:g} is not a category code 0..{self.classes - 1} (categorical: {self.classes})"

    def build(self, n: int) -> "OrdinalLogit":
        return OrdinalLogit(self.classes)


class OrdinalLogit(ColumnTransform):
    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = logit_of_unit(v / self.classes)
        return y, logdet - math.log(self.classes)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        p, logdet = sigmoid_of_real(y)
        return self.classes * p, logdet + math.log(self.classes)

    def to_data(self, v: Tensor) -> Tensor:
        return v.floor().clamp(0, self.classes - 1)
