"""``resmlp``: the vector counterpart of RealNVP's residual conditioner (arXiv:1605.08803): a linear
into ``hidden`` features, ``blocks`` residual blocks ``h + linear(relu(norm(linear(relu(norm(h))))))``,
then ``relu(norm(h))`` and a zero-initialised linear out. ``norm: batch`` is batch normalisation
of the hidden features (batch statistics in training, running averages in evaluation); ``norm:
weight`` reparametrises every linear as ``W = g v / ||v||`` per output (Salimans & Kingma 2016,
arXiv:1602.07868) and has no batch norm. The context, if any, is appended to the input features.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import ConditionerConfig, NetCost, register_conditioner
from flowspec.layers.conditioners.resnet import ResidualStack, residual_stack_cost


@register_conditioner
class ResMLPConditioner(ConditionerConfig):
    kind: Literal["resmlp"] = "resmlp"
    accepts = "vector"
    hidden: PositiveInt = Field(256, description="features of the residual blocks")
    blocks: Annotated[int, Field(ge=1, le=64)] = Field(2, description="residual blocks")
    norm: Literal["batch", "weight"] = "batch"
    zero_init: bool = True

    def build(self, in_features: int, out_features: int, context: int = 0) -> nn.Module:
        return ResMLP(in_features + context, out_features, self.hidden, self.blocks, self.norm, self.zero_init)

    def linears(self, in_features: int, out_features: int, context: int = 0) -> list[tuple[int, int, int]]:
        """(in, out, 1) of every linear, for the cost rule."""
        h = self.hidden
        return [(in_features + context, h, 1)] + [(h, h, 1)] * (2 * self.blocks) + [(h, out_features, 1)]

    def cost(self, in_features: int, out_features: int, spatial: int = 1, context: int = 0) -> NetCost:
        """The linears' ``sum(i o + o)`` params and ``2 i o`` FLOPs, plus the norms and residuals of
        :func:`~flowspec.layers.conditioners.resnet.residual_stack_cost`."""
        return residual_stack_cost(self.linears(in_features, out_features, context), self.hidden, self.blocks,
                                   self.norm, 1)

    def matmul_ops(self, in_features: int, out_features: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o, _ in self.linears(in_features, out_features, context)]

    def narrow(self, width: int) -> "ResMLPConditioner":
        return self.model_copy(update={"hidden": min(self.hidden, width)})


class WeightNormLinear(nn.Module):
    """A linear with ``W = g v / ||v||`` (the norm per output), ``g`` initialised to ``||v||``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        linear = nn.Linear(cin, cout)
        self.v = nn.Parameter(linear.weight.detach().clone())
        self.g = nn.Parameter(linear.weight.detach().norm(dim=1))
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        weight = self.v * (self.g / self.v.norm(dim=1).clamp_min(1e-12)).unsqueeze(1)
        return F.linear(x, weight, self.bias)


class ResMLP(ResidualStack):
    """The vector counterpart of :class:`~flowspec.layers.conditioners.resnet.ResNet` (linears)."""

    def __init__(self, cin: int, cout: int, hidden: int, blocks: int, norm: str, zero_init: bool):
        def linear(i: int, o: int) -> nn.Module:
            return WeightNormLinear(i, o) if norm == "weight" else nn.Linear(i, o)

        def normalise() -> nn.Module:
            return nn.BatchNorm1d(hidden) if norm == "batch" else nn.Identity()

        super().__init__(linear, normalise, cin, cout, hidden, blocks, zero_init)
