r"""``positive``: a column of values ``> 0``, mapped to the real line by ``log`` or by the inverse of
softplus.

``map: log``:       ``y = log x``, inverse ``x = exp y``, log-det ``-log x``
``map: softplus``:  ``y = log(exp(x) - 1) = x + log(1 - exp(-x))``, inverse ``x = softplus(y)``,
                    log-det ``-log(1 - exp(-x))`` (near-identity for large ``x``: heavy right tails
                    stay heavy, where ``log`` compresses them)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from flowspec.columns.base import ColumnConfig, ColumnTransform, register_column


@register_column
class PositiveColumn(ColumnConfig):
    kind: Literal["positive"] = "positive"
    map: Literal["log", "softplus"] = Field("log", description="log, or the inverse of softplus")
    flops = (4.0, 4.0)  # log (or expm1, log, add) and a negation; the inverse: exp (or softplus, logsigmoid)

    def valid(self, values: np.ndarray) -> np.ndarray:
        return values > 0

    def problem(self, value: float) -> str:
        return f"{value:g} is not positive (a positive column needs values > 0)"

    def build(self, n: int) -> ColumnTransform:
        return LogMap() if self.map == "log" else InverseSoftplus()


class LogMap(ColumnTransform):
    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.log(v)
        return y, -y

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(y), y


class InverseSoftplus(ColumnTransform):
    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        tail = torch.log(-torch.expm1(-v))  # log(1 - exp(-x)), exact for small and large x
        return v + tail, -tail

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return F.softplus(y), F.logsigmoid(y)
