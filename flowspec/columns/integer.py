r"""``integer``: a column of integers (counts, ratings), uniformly dequantized as image levels are
(Theis et al. 2016, arXiv:1511.01844; Ho et al. 2019, Flow++, arXiv:1902.00275, sec. 3.1).

The model sees ``v = x + u`` with ``u ~ U[0, 1)``; the map on ``v`` is the identity (log-det 0).
``log P(x) >= E_u[log p(x + u)]`` (bins of width 1, so no ``log n`` term): the figure a table with
integer columns reports is this bound, in nats, for those columns.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from torch import Tensor

from flowspec.columns.base import ColumnConfig, register_column
from flowspec.columns.real import Identity


@register_column
class IntegerColumn(ColumnConfig):
    kind: Literal["integer"] = "integer"
    discrete = True
    flops = (1.0, 1.0)  # the dequantization's add; the inverse's floor

    def valid(self, values: np.ndarray) -> np.ndarray:
        return values == np.floor(values)

    def problem(self, value: float) -> str:
        return f"{value:g} is not an integer (an integer column)"

    def build(self, n: int) -> "Dequantized":
        return Dequantized()


class Dequantized(Identity):
    def to_data(self, v: Tensor) -> Tensor:
        return v.floor()
