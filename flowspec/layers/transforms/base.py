"""The elementwise-transform contract of a coupling: a monotonic bijection of each transformed
entry ``x``, parametrised by ``P`` numbers per entry that the conditioner computes.

A transform kind is a pydantic config with ``kind: Literal[...]`` registered with
:func:`register_transform`. It knows:

* ``params_per_entry``: ``P`` (additive 1, affine 2, spline ``3K - 1``, logistic mixture ``3K + 2``);
* ``build()``: the module, ``forward(x, params) -> (y, logdet)`` and ``inverse(y, params) ->
  (x, logdet)``, one pass each, with ``params`` of shape ``(B, P, *x.shape[1:])`` and ``logdet``
  the per-entry ``log|dy/dx|`` (``None`` where it is 0 everywhere); the inverse's is ``-`` the
  forward's at the same point;
* ``cost()``: FLOPs per entry of forward, inverse and log-det, and the tensor ops of one call.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from flowspec.layers.kinds import Registry

TRANSFORM_KINDS = Registry("transform")


def register_transform(config: type["TransformConfig"]) -> type["TransformConfig"]:
    """Make a transform kind known to couplings, the spec language, the report and the tests."""
    return TRANSFORM_KINDS.register(config)


class TransformCost(NamedTuple):
    """Per transformed entry: FLOPs of forward, of inverse and of the log-det term; tensor ops of
    one call; elements one call keeps for the backward pass, per entry; the transform's own learned
    parameters (per transform, not per entry: RealNVP's tanh scale)."""

    flops_forward: float
    flops_inverse: float
    flops_logdet: float
    ops: int
    saved: float = 0.0
    params: int = 0


class TransformConfig(BaseModel):
    """Base of every transform kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite
    kind: str
    #: True when ``inverse`` is iterative rather than closed-form (the report says so)
    iterative_inverse: ClassVar[bool] = False

    @property
    def params_per_entry(self) -> int:
        raise NotImplementedError

    def build(self) -> "ElementwiseTransform":
        raise NotImplementedError

    def cost(self) -> TransformCost:
        raise NotImplementedError


class ElementwiseTransform(nn.Module):
    """``forward(x, params) -> (y, logdet per entry or None)``; ``inverse(y, params)`` likewise."""

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError
