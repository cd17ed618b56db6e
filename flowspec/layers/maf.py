r"""``maf``: a masked autoregressive flow layer on vectors, an
:class:`~flowspec.layers.autoregressive.AutoregressiveLayer` with a ``masked`` conditioner (Papamakarios, Pavlakou & Murray 2017,
"Masked Autoregressive Flow for Density Estimation", arXiv:1705.07057).

With ``pi`` the layer's variable order and ``theta_i = MADE(x_{pi < pi(i)}, h)_i`` the transform's
parameters for variable ``i`` (a :class:`~flowspec.layers.made.MADE`, Germain et al. 2015,
arXiv:1502.03509, whose masks make ``theta_i`` depend only on the variables before ``i`` in the order,
and on the condition's features ``h`` freely):

forward (density):  ``y_i = tau(x_i; theta_i(x))``: one MADE pass for every ``i`` at once
inverse (sampling): ``x_i = tau^{-1}(y_i; theta_i(x))`` in the order: the ``k``-th variable needs
                    the ``k - 1`` before it, so the inverse is sequential, ``D`` MADE passes
log-det:            ``sum_i log|tau'(x_i; theta_i)|`` (the Jacobian is triangular in the order)

``tau`` is a registered elementwise transform (``affine`` by default, with ``s = exp(c tanh(h / c))``
and the shift ``t = 3 h_t``; with ``affine``, ``y_i = x_i exp(a_i) + t_i``: the paper's ``x_i = u_i
exp(alpha_i) + mu_i`` read in the density direction, ``a = -alpha``, ``t = -mu exp(a)``). The shift
gain 3 (``shift_gain``) leaves the maps as they are and speeds the shift's learning: ``t = -mu exp(a)``
grows with the scale the layer learns, while Adam moves each output weight by about its learning rate
per step. The MADE's input layer starts over each unit's kept fan-in, its later layers over all
inputs (``init: input``; see :mod:`flowspec.layers.made`). Both defaults were chosen on
``benchmarks/tabular.py`` (the guide's tables section: wine overfit less, the 8x8 patches fit faster).
``order``: ``natural`` (``0, 1, ..``), ``reversed``, or ``random`` (a permutation drawn from ``seed``);
the paper reverses the order between stacked layers, so alternate ``natural`` and ``reversed`` rows
(copies in a ``repeat`` block share their ``order`` and ``seed``). The output
layer starts at zero, so a fresh layer is the transform's all-zero-parameter map (the identity for
``affine`` with ``exp`` scale).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.layers.base import ContextShape, LayerConfig, LayerCost, MatmulOp, Shape, register
from flowspec.layers.conditioners import context_channels
from flowspec.layers.autoregressive import AutoregressiveLayer
from flowspec.layers.made import Activation, MaskedConditioner, MaskedInit, natural_order
from flowspec.layers.transforms import AffineTransform, Transform


#: ``maf``'s default shift gain ``k``: ``t = k h_t`` (see the module docstring)
MAF_SHIFT_GAIN = 3.0


def _exp_affine() -> AffineTransform:
    return AffineTransform(scale="exp", shift_gain=MAF_SHIFT_GAIN)


@register
class MAFConfig(LayerConfig):
    kind: Literal["maf"] = "maf"
    accepts = "vector"
    reads_context = True  # the MADE's first hidden layer and outputs
    hidden: PositiveInt = Field(64, description="units per MADE hidden layer (D - 1 or more keeps every degree)")
    depth: Annotated[int, Field(ge=1, le=8)] = Field(2, description="MADE hidden layers")
    activation: Activation = Field("elu", description="the MADE's hidden nonlinearity: elu, relu, gelu or tanh")
    init: MaskedInit = Field("input", description="masked weights start over the fan-in their mask keeps: in the "
                                                  "input layer only (input), in every layer (masked), or over all "
                                                  "inputs (dense: nflows', zuko's)")
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

    def conditioner(self) -> MaskedConditioner:
        """The layer's autoregressive conditioner: a MADE of ``depth`` x ``hidden``."""
        return MaskedConditioner(hidden=self.hidden, depth=self.depth, activation=self.activation, init=self.init)

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        """One MADE pass (dense matmuls ``2 i o`` each, the activation ``4 H`` per hidden layer for ELU) and the
        transform on ``D`` entries forward; the inverse is sequential: ``D`` MADE passes and ``D``
        transform inverses. The masks ``W * M`` are built once per call (``i o`` each)."""
        d, p = shape[0], self.transform.params_per_entry
        net = self.conditioner().cost(d, p, context_channels(context))
        entry = self.transform.cost()
        pass_flops = net.flops_forward
        return LayerCost(
            params=net.params + entry.params,
            flops_forward=pass_flops + entry.flops_forward * d,
            flops_inverse=d * (pass_flops + entry.flops_inverse * d),
            matmul_flops_forward=net.matmul_flops_forward, matmul_flops_inverse=d * net.matmul_flops_forward,
            flops_logdet=entry.flops_logdet * d,
            # the conditioner's input and hidden layers, the transform's parameters and its own;
            # autograd also keeps the masked weights W * M once per call
            activations=int(net.activations + p * d + entry.saved * d
                            # measured: a transform of many parameters per entry (spline: 3K - 1) keeps
                            # 1.75x the coupling's tensors when its parameters come as a MADE's
                            # (B, P, D) output (79 vs 45 per entry at K = 8); affine and additive: as measured
                            + (0.75 * entry.saved * d if p > 2 else 0)),
            call_activations=int(net.call_activations),
            call_flops_forward=net.call_flops_forward, call_flops_inverse=d * net.call_flops_forward,
            ops=net.ops + 6 + entry.ops)

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        return self.conditioner().matmul_ops(shape[0], self.transform.params_per_entry, context_channels(context))

    def narrow(self, width: int) -> "MAFConfig":
        return self.model_copy(update={"hidden": min(self.hidden, width)})

    def dependent_entries(self, shape: Shape) -> np.ndarray:
        """Every variable but the first in the order (its parameters see no other variable)."""
        return self.degrees(shape[0]).numpy() > 1

    def jacobian_pattern(self, shape: Shape) -> np.ndarray:
        """Variable ``i`` reads variable ``j`` only before it in the order, or itself."""
        degrees = self.degrees(shape[0]).numpy()
        return (degrees[None, :] < degrees[:, None]) | np.eye(shape[0], dtype=bool)

    def build(self, shape: Shape, context: ContextShape = None) -> AutoregressiveLayer:
        made = self.conditioner().build(shape[0], self.transform.params_per_entry, context_channels(context),
                                        self.degrees(shape[0]))
        nn.init.zeros_(made.out.weight)
        nn.init.zeros_(made.out.bias)
        if made.context_out is not None:
            nn.init.zeros_(made.context_out.weight)
        return AutoregressiveLayer(made, self.transform.build())


MAF = AutoregressiveLayer  # the module of a maf row
