r"""``real``: a real-valued column, modelled as it is.

forward ``y = x``, inverse ``x = y``, log-det 0. Every finite value is in the domain. Columns that no
entry of ``input.columns`` names are ``real``.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from flowspec.columns.base import ColumnConfig, ColumnTransform, register_column


@register_column
class RealColumn(ColumnConfig):
    kind: Literal["real"] = "real"
    identity = True

    def build(self, n: int) -> "Identity":
        return Identity()


class Identity(ColumnTransform):
    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        return v, v.new_zeros(v.shape)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, y.new_zeros(y.shape)
