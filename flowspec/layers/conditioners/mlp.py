"""``mlp``: Linear -> ReLU per hidden size, then a zero-initialised linear output (NICE, Dinh et al.
2014, arXiv:1410.8516). The context, if any, is appended to the input features."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt
from torch import nn

from flowspec.layers.base import MatmulOp
from flowspec.layers.conditioners.base import ConditionerConfig, ContextNet, NetCost, register_conditioner, stack_cost, zero_init


@register_conditioner
class MLPConditioner(ConditionerConfig):
    kind: Literal["mlp"] = "mlp"
    accepts = "vector"
    hidden: Annotated[list[PositiveInt], Field(min_length=1)] = [256, 256]
    zero_init: bool = True

    def build(self, in_features: int, out_features: int, context: int = 0) -> nn.Module:
        layers: list[nn.Module] = []
        width = in_features + context
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        last = nn.Linear(width, out_features)
        if self.zero_init:
            zero_init(last)
        return ContextNet(*layers, last)

    def linears(self, in_features: int, out_features: int, context: int = 0) -> list[tuple[int, int]]:
        sizes = [in_features + context, *self.hidden, out_features]
        return list(zip(sizes[:-1], sizes[1:]))

    def cost(self, in_features: int, out_features: int, spatial: int = 1, context: int = 0) -> NetCost:
        """Params, matmul FLOPs and outputs per example (``spatial`` is 1: a vector)."""
        return stack_cost([(i, o, 1) for i, o in self.linears(in_features, out_features, context)], spatial)

    def matmul_ops(self, in_features: int, out_features: int, spatial: tuple, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o in self.linears(in_features, out_features, context)]

    def narrow(self, width: int) -> "MLPConditioner":
        return self.model_copy(update={"hidden": [min(h, width) for h in self.hidden]})
