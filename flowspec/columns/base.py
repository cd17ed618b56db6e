"""The column-type contract of a table: each type is a bijection from its values onto the real line
with an exact log-det, so a flow on ``R^D`` models a table of mixed columns.

A column kind is a pydantic config with ``kind: Literal[...]`` registered with
:func:`register_column`. It covers the columns ``at`` (one index ``3``, or an inclusive range
``"2-5"``) and knows:

* ``discrete``: its values are integers, dequantized before the map (``v = x + u``, ``u ~ U[0, 1)``);
* ``valid(values)``: which values (a numpy array) lie in its domain, and ``problem(value)``: one
  sentence saying why a value does not (the loaders name the row and the column);
* ``parameters(n)``: learned numbers of the map for ``n`` columns, and ``cost(n)`` (``flops``: FLOPs
  per entry of the forward with its log-det, and of the inverse), which the report counts;
* ``build(n)``: the module, ``forward(v) -> (y, logdet)`` and ``inverse(y) -> (v, logdet)`` on
  ``(batch, n)`` tensors, ``logdet`` the per-entry ``log|dy/dv|`` (the inverse's is minus it).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from flowspec.core.costs import LayerCost
from flowspec.layers.kinds import Registry

COLUMN_KINDS = Registry("column")
RANGE_PATTERN = r"^\d+(-\d+)?$"


def _ordered_interval(bounds: list[float]) -> list[float]:
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError(f"bounds must be finite with lo < hi, got [{lo}, {hi}]")
    return bounds


#: ``[lo, hi]`` with finite ends and ``lo < hi`` (a bounded column's range, a circular one's turn)
Interval = Annotated[list[float], Field(min_length=2, max_length=2), AfterValidator(_ordered_interval)]


def register_column(config: type["ColumnConfig"]) -> type["ColumnConfig"]:
    """Make a column kind known to the spec language, the loaders, the model and the tests."""
    return COLUMN_KINDS.register(config)


class ColumnConfig(BaseModel):
    """Base of every column kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    at: Union[int, str] = Field(description="the columns: one 0-based index (3) or an inclusive range ('2-5')",
                                json_schema_extra={"pattern": RANGE_PATTERN, "minimum": 0})
    #: integer values, dequantized by uniform noise before the map
    discrete: ClassVar[bool] = False
    #: the map is the identity (``real``): the row map leaves these columns alone
    identity: ClassVar[bool] = False
    #: FLOPs per entry: forward with its log-det, inverse
    flops: ClassVar[tuple[float, float]] = (0.0, 0.0)

    @field_validator("at")
    @classmethod
    def _index_or_range(cls, at):
        if isinstance(at, bool):
            raise ValueError("at is a column index (3) or an inclusive range ('2-5'), not a boolean")
        if isinstance(at, int):
            if at < 0:
                raise ValueError(f"at is a 0-based column index, got {at}")
            return at
        text = at.strip()
        if not re.fullmatch(RANGE_PATTERN, text):
            raise ValueError(f"at is a column index (3) or an inclusive range ('2-5'), got {at!r}")
        first, _, last = text.partition("-")
        if last and int(last) < int(first):
            raise ValueError(f"the range {at!r} runs backwards; write '{last}-{first}'")
        return text

    @property
    def columns(self) -> range:
        """The 0-based column indices this entry covers."""
        if isinstance(self.at, int):
            return range(self.at, self.at + 1)
        first, _, last = self.at.partition("-")
        return range(int(first), int(last or first) + 1)

    def valid(self, values: np.ndarray) -> np.ndarray:
        """A boolean mask of the (finite) values that lie in this type's domain."""
        return np.ones(np.shape(values), dtype=bool)

    def problem(self, value: float) -> str:
        """Why ``value`` is not in the domain, as a sentence fragment (``"-1 is not positive"``)."""
        return f"{value!r} is not a valid {self.kind} value"

    def parameters(self, n: int) -> int:
        return 0

    def cost(self, n: int) -> LayerCost:
        """The map on ``n`` columns, per example: its parameters, FLOPs and the ``n`` values it keeps."""
        forward, inverse = self.flops
        return LayerCost(params=self.parameters(n), flops_forward=forward * n, flops_inverse=inverse * n,
                         activations=n if forward else 0, ops=8 if forward else 0)

    def build(self, n: int) -> "ColumnTransform":
        raise NotImplementedError


class ColumnTransform(nn.Module):
    """``forward(v) -> (y, logdet per entry)``; ``inverse(y) -> (v, logdet per entry)``."""

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def to_data(self, v: Tensor) -> Tensor:
        """``v`` (the inverse's output) as a value of the column: as it is, or rounded down for a
        discrete column."""
        return v
