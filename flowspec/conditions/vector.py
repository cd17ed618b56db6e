"""``{kind: vector, dim: D, hidden: [H1, ...]}``: ``c`` is a real vector ``R^D``; its features are
``c`` itself, or, with ``hidden``, the output of a small MLP (Linear -> ReLU per width, the last
width is the feature size)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.conditions.base import ConditionConfig, ConditionEmbedding, register_condition
from flowspec.errors import ConditionError
from flowspec.core.costs import LayerCost, MatmulOp, Shape


@register_condition
class VectorCondition(ConditionConfig):
    """A context vector ``c in R^dim``; features ``c`` itself, or ``MLP(c)`` with ``hidden`` widths
    (Linear -> ReLU each; the last width is the feature size)."""

    kind: Literal["vector"] = "vector"
    dim: PositiveInt = Field(description="size D of the context vector")
    hidden: list[PositiveInt] = Field(default_factory=list,
                                      description="widths of the MLP that turns c into features; [] uses c as it is")

    @property
    def features(self) -> int:
        return self.hidden[-1] if self.hidden else self.dim

    @property
    def input_shape(self) -> Shape:
        return (self.dim,)

    def linears(self) -> list[tuple[int, int]]:
        sizes = [self.dim, *self.hidden]
        return list(zip(sizes[:-1], sizes[1:]))

    def cost(self) -> LayerCost:
        """The MLP: ``sum(i o + o)`` parameters, ``sum(2 i o)`` matmul FLOPs per example, a ReLU
        per layer."""
        linears = self.linears()
        matmul = sum(2.0 * i * o for i, o in linears)
        return LayerCost(params=sum(i * o + o for i, o in linears), flops_forward=matmul + sum(o for _, o in linears),
                         flops_inverse=matmul, matmul_flops_forward=matmul, matmul_flops_inverse=matmul,
                         activations=sum(o for _, o in linears), ops=2 * len(linears))

    def matmul_ops(self) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o in self.linears()]

    def describe(self) -> str:
        return f"condition: {{kind: vector, dim: {self.dim}}}"

    def detail(self) -> str:
        return f"vector {self.dim}" + (f" -> mlp {self.hidden}" if self.hidden else "")

    def missing_hint(self) -> str:
        return f"contexts c of shape (batch, {self.dim})"

    def data_requirements(self) -> dict:
        return {"context_dim": self.dim}

    def is_one(self, c: Tensor) -> bool:
        return c.dim() <= 1

    def as_tensor(self, c, batch: int | None, device=None, dtype=None, tracing: bool = False) -> Tensor:
        """float ``(batch, dim)`` contexts, finite; a ``(dim,)`` vector is repeated ``batch`` times."""
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not (isinstance(c, Tensor) and c.dtype == dtype and (device is None or c.device == device)):
            c = torch.as_tensor(c, device=device, dtype=dtype)
        if c.dim() == 1 and batch is not None and c.shape[0] == self.dim:
            c = c.expand(batch, -1)
        if c.dim() != 2 or c.shape[1] != self.dim:
            raise ConditionError(f"contexts must have shape (batch, {self.dim}), got {tuple(c.shape)} "
                                 f"({self.describe()})")
        if not tracing and not bool(torch.isfinite(c).all()):
            raise ConditionError("contexts hold NaN or inf")
        return c

    def random(self, n: int, generator=None) -> Tensor:
        """``n`` standard normal contexts ``(n, dim)``."""
        return torch.randn(n, self.dim, generator=generator)

    def build(self) -> ConditionEmbedding:
        layers: list[nn.Module] = []
        for i, o in self.linears():
            layers += [nn.Linear(i, o), nn.ReLU()]
        return ConditionEmbedding(nn.Sequential(*layers))
