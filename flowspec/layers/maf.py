r"""``maf``: a masked autoregressive flow layer on vectors (Papamakarios, Pavlakou & Murray 2017,
"Masked Autoregressive Flow for Density Estimation", arXiv:1705.07057).

With ``pi`` the layer's variable order and ``theta_i = MADE(x_{pi < pi(i)}, h)_i`` the transform's
parameters for variable ``i`` (a :class:`~flowspec.layers.made.MADE`, Germain et al. 2015,
arXiv:1502.03509, whose masks make ``theta_i`` depend only on the variables before ``i`` in the order,
and on the condition's features ``h`` freely):

forward (density):  ``y_i = tau(x_i; theta_i(x))``: one MADE pass for every ``i`` at once
inverse (sampling): ``x_i = tau^{-1}(y_i; theta_i(x))`` in the order: the ``k``-th variable needs
                    the ``k - 1`` before it, so the inverse is sequential, ``D`` MADE passes
log-det:            ``sum_i log|tau'(x_i; theta_i)|`` (the Jacobian is triangular in the order)

``tau`` is a registered elementwise transform (``affine`` by default, with ``s = exp(c tanh(h / c))``;
with ``affine``, ``y_i = x_i exp(a_i) + t_i``: the paper's ``x_i = u_i exp(alpha_i) + mu_i`` read in the
density direction). ``order``: ``natural`` (``0, 1, ..``), ``reversed``, or ``random`` (a permutation
drawn from ``seed``); the paper reverses the order between stacked layers, so alternate ``natural``
and ``reversed`` rows (copies in a ``repeat`` block share their ``order`` and ``seed``). The output
layer starts at zero, so a fresh layer is the transform's all-zero-parameter map (the identity for
``affine`` with ``exp`` scale).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.base import (ContextShape, FlowLayer, LayerConfig, LayerCost, MatmulOp, Shape, register)
from flowspec.layers.conditioners import context_channels
from flowspec.layers.made import MADE, natural_order
from flowspec.layers.transforms import AffineTransform, Transform


def _exp_affine() -> AffineTransform:
    return AffineTransform(scale="exp")


@register
class MAFConfig(LayerConfig):
    kind: Literal["maf"] = "maf"
    accepts = "vector"
    hidden: PositiveInt = Field(64, description="units per MADE hidden layer (D - 1 or more keeps every degree)")
    depth: Annotated[int, Field(ge=1, le=8)] = Field(2, description="MADE hidden layers")
    order: Literal["natural", "reversed", "random"] = Field("natural", description="the variable order")
    seed: Annotated[int, Field(ge=0)] = Field(0, description="seed of the random order")
    transform: Transform = Field(default_factory=_exp_affine,
                                 description="elementwise transform: a kind name or {kind: ..., options}")

    def degrees(self, features: int) -> Tensor:
        """Ranks ``1..D`` of the variables in this layer's order."""
        if self.order == "random":
            permutation = torch.randperm(features, generator=torch.Generator().manual_seed(self.seed))
            return permutation + 1
        return natural_order(features, reverse=self.order == "reversed")

    def _linears(self, shape: Shape, context: ContextShape) -> list[tuple[int, int, bool]]:
        """``(in, out, bias)`` of the MADE's linears: hidden layers, output, context ones."""
        d, h, e = shape[0], self.hidden, context_channels(context)
        out = self.transform.params_per_entry * d
        layers = [(d if i == 0 else h, h, True) for i in range(self.depth)] + [(h, out, True)]
        if e:
            layers += [(e, h, True), (e, out, False)]
        return layers

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        """One MADE pass (dense matmuls ``2 i o`` each, ELUs ``4 H`` per hidden layer) and the
        transform on ``D`` entries forward; the inverse is sequential: ``D`` MADE passes and ``D``
        transform inverses. The masks ``W * M`` are built once per call (``i o`` each)."""
        linears = self._linears(shape, context)
        d = shape[0]
        matmul = sum(2.0 * i * o for i, o, _ in linears)
        elementwise = 4.0 * self.hidden * self.depth
        entry = self.transform.cost()
        masked = float(sum(i * o for i, o, _ in linears[: self.depth + 1]))
        return LayerCost(
            params=sum(i * o + (o if bias else 0) for i, o, bias in linears) + entry.params,
            flops_forward=matmul + elementwise + entry.flops_forward * d,
            flops_inverse=d * (matmul + elementwise + entry.flops_inverse * d),
            matmul_flops_forward=matmul, matmul_flops_inverse=d * matmul,
            flops_logdet=entry.flops_logdet * d,
            # input, each hidden layer's pre-activation and output, the transform's parameters;
            # autograd also keeps the masked weights W * M once per call
            activations=int(d + self.hidden * self.depth * 2 + self.transform.params_per_entry * d + entry.saved * d),
            call_activations=int(masked),
            call_flops_forward=masked, call_flops_inverse=d * masked,
            ops=4 * self.depth + 6 + entry.ops + (3 if context else 0))

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o, _ in self._linears(shape, context)]

    def narrow(self, width: int) -> "MAFConfig":
        return self.model_copy(update={"hidden": min(self.hidden, width)})

    def dependent_entries(self, shape: Shape) -> np.ndarray:
        """Every variable but the first in the order (its parameters see no other variable)."""
        return self.degrees(shape[0]).numpy() > 1

    def build(self, shape: Shape, context: ContextShape = None) -> "MAF":
        made = MADE(shape[0], self.hidden, self.depth, context_channels(context), self.degrees(shape[0]),
                    outputs=self.transform.params_per_entry)
        nn.init.zeros_(made.out.weight)
        nn.init.zeros_(made.out.bias)
        if made.context_out is not None:
            nn.init.zeros_(made.context_out.weight)
        return MAF(made, self.transform.build())


class MAF(FlowLayer):
    def __init__(self, made: MADE, transform: nn.Module):
        super().__init__()
        self.made = made
        self.transform = transform

    @staticmethod
    def _sum(logdet: Tensor | None, like: Tensor) -> Tensor:
        return like.new_zeros(like.shape[0]) if logdet is None else logdet.sum(1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, logdet = self.transform(x, self.made(x, context))
        return y, self._sum(logdet, x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``D`` MADE passes: pass ``k`` fixes the variable of rank ``k``, whose parameters depend
        only on variables already fixed; the last pass's parameters are final for every variable."""
        degrees = self.made.degrees
        x = torch.zeros_like(y)
        logdet = None
        for rank in range(1, y.shape[1] + 1):
            candidate, logdet = self.transform.inverse(y, self.made(x, context))
            x = torch.where(degrees == rank, candidate, x)
        return x, self._sum(logdet, y)
