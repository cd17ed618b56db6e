"""The layer interface: one config model per kind, carrying its shape rule, cost rule and module.

A layer kind is a pydantic model with ``kind: Literal["name"]`` registered with
:func:`register`. It knows, as pure functions of shapes (no weights allocated):

* ``output_shape(shape)`` -- the shape it produces, raising :class:`RuleViolation` when a
  dimension or invertibility rule is broken;
* ``cost(shape)`` -- parameters, FLOPs of forward / inverse / log-det and stored activations;

and ``build(shape)`` returns its :class:`FlowLayer` module. Shapes exclude the batch dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from flowspec.errors import RuleViolation

Shape = tuple[int, ...]

LAYER_KINDS: dict[str, type["LayerConfig"]] = {}


def register(config: type["LayerConfig"]) -> type["LayerConfig"]:
    """Make a layer kind known to the spec language, the graph, the report and the tests."""
    kind = config.model_fields["kind"].default
    LAYER_KINDS[kind] = config
    return config


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer at one input shape, per example (multiply by the batch size).

    ``flops_*`` count multiply-adds as 2 FLOPs. ``matmul_flops_*`` is the conv/matmul part that
    torch's FlopCounterMode sees; ``flops_logdet`` is the log-det term alone (e.g. ``slogdet``'s
    O(c^3), once per call, not per example -- see ``logdet_per_call``).
    """

    params: int = 0
    flops_forward: float = 0.0
    flops_inverse: float = 0.0
    matmul_flops_forward: float = 0.0
    matmul_flops_inverse: float = 0.0
    flops_logdet: float = 0.0
    logdet_per_call: bool = False
    activations: int = 0  # elements kept for the backward pass of a training step
    #: FLOPs paid once per call whatever the batch (building ``W`` or ``W^{-1}`` from parameters)
    call_flops_forward: float = 0.0
    call_flops_inverse: float = 0.0
    call_matmul_flops_forward: float = 0.0  # the part of call_flops_* that is a matmul
    call_matmul_flops_inverse: float = 0.0
    #: tensor operations one forward call dispatches (in eager PyTorch each costs a fixed latency,
    #: which dominates small layers; the report's roofline adds ``ops * latency``)
    ops: int = 0


class LayerConfig(BaseModel):
    """Base of every layer kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str | None = None

    #: True for layers that factor out part of their input to a prior (``split``).
    factors_out: ClassVar[bool] = False
    #: The shapes this kind accepts: "image" (C, H, W), "vector" (D,) or "any".
    accepts: ClassVar[str] = "any"

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def check_input(self, shape: Shape) -> None:
        """Reject input shapes this kind does not accept (called before ``output_shape``)."""
        if self.accepts == "image" and len(shape) != 3:
            raise RuleViolation(f"{self.kind} needs an image input (C, H, W), got {shape}")
        if self.accepts == "vector" and len(shape) != 1:
            raise RuleViolation(f"{self.kind} needs a vector input (D,), got {shape}")

    def cost(self, shape: Shape) -> LayerCost:
        return LayerCost()

    def build(self, shape: Shape) -> "FlowLayer":
        raise NotImplementedError


class FlowLayer(nn.Module):
    """An invertible map. ``forward(x) -> (y, logdet)``, ``inverse(y) -> (x, logdet_inverse)``.

    Forward is data -> latent; ``logdet = log|det dy/dx|`` has shape ``(batch,)`` and the
    inverse returns ``-logdet`` of the forward at the same point. Laws: ``inverse(forward(x)[0])[0]
    == x``.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def numel(shape: Shape) -> int:
    return math.prod(shape)


def channel_view(shape: Shape) -> Shape:
    """Broadcast shape of a per-channel parameter: (1, C, 1, 1) for images, (1, D) for vectors."""
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def per_example(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scalar log-det to shape ``(batch,)``."""
    return value.expand(x.shape[0])


def zeros_like_batch(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
