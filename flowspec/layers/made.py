r"""MADE: a masked autoencoder whose outputs are autoregressive in a chosen variable order.

Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation", arXiv:1502.03509.

Each input ``z_j`` gets a degree ``d(j) in {1..D}`` (its rank in the order), each hidden unit a
degree ``d(u) in {1..D-1}``. A weight ``u <- j`` of the first layer is kept iff ``d(u) >= d(j)``,
between hidden layers ``u' <- u`` iff ``d(u') >= d(u)``, and an output ``i <- u`` iff
``d(i) > d(u)``. So output ``i`` depends only on inputs ``j`` with ``d(j) < d(i)``: the Jacobian
``d out / d z`` is strictly triangular in the order. The context ``h`` enters the first hidden
layer and the output layer unmasked (Kingma et al. 2016, arXiv:1606.04934, Sec. 4), so every
output, the first variable's included, depends on it.

Initialisation (``init``): a masked unit reads only the ``n_u`` inputs its mask keeps, so with
``masked`` its weights are drawn as ``nn.Linear``'s default over that fan-in, ``U(-1/sqrt(n_u),
1/sqrt(n_u))``, not over all inputs: otherwise a unit of low degree starts with a pre-activation
``sqrt(n_u / n)`` times smaller, where ELU is all but linear, and the MADE starts close to a linear
map. ``input`` does so in the input layer only (the variables, ``n_u`` from 1 to ``D - 1``) and keeps
``nn.Linear``'s default over all inputs in the later layers, so that a later unit of low degree starts
smoother; ``dense`` keeps the default everywhere (nflows', zuko's).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.layers.autoregressive import ARConditionerConfig, register_ar_conditioner
from flowspec.layers.base import LayerCost, MatmulOp


class MaskedLinear(nn.Linear):
    """``y = (W * M) x + b`` with a fixed 0/1 mask ``M`` of W's shape; row ``u`` of ``W`` starts
    ``U(-1/sqrt(n_u), 1/sqrt(n_u))`` with ``n_u`` the inputs the mask keeps (``nn.Linear``'s default
    over the kept fan-in); ``init: dense`` keeps ``U(-1/sqrt(in), 1/sqrt(in))`` over all inputs."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor, init: str = "masked"):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))
        if init == "masked":
            with torch.no_grad():  # nn.Linear drew U(-1/sqrt(in), 1/sqrt(in)): rescale to the kept fan-in
                kept = self.mask.sum(1, keepdim=True).clamp_min(1.0)
                self.weight.mul_(torch.sqrt(in_features / kept))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


#: hidden activations of a MADE and their cost per element (FLOPs): ELU (the default; Clevert et al.
#: 2016), ReLU (nflows' and zuko's default), GELU, tanh
ACTIVATIONS = {"elu": (F.elu, 4.0), "relu": (F.relu, 1.0), "gelu": (F.gelu, 8.0), "tanh": (torch.tanh, 4.0)}
Activation = Literal["elu", "relu", "gelu", "tanh"]
#: masked weights start over the fan-in their mask keeps (``masked``), in the input layer only
#: (``input``; later layers over all their inputs), or over all inputs everywhere (``dense``)
MaskedInit = Literal["masked", "input", "dense"]


def natural_order(features: int, reverse: bool = False) -> Tensor:
    """Degrees ``d(j)`` (1-based ranks) of the natural order ``0, 1, ..`` or of its reverse."""
    degrees = torch.arange(1, features + 1)
    return degrees.flip(0) if reverse else degrees


class MADE(nn.Module):
    r"""``MADE(z, h) -> (batch, outputs, D)``: ``outputs`` heads, head ``[:, k, i]`` depends on
    ``z_j`` only for ``degrees[j] < degrees[i]``, and on the context ``h`` freely.

    Args:
        features: D, the size of z.
        hidden: units per hidden layer; with ``hidden >= D - 1`` every degree is present.
        depth: hidden layers.
        context: size of h (0: none).
        degrees: ranks ``1..D`` of the variables in the order (default: natural order).
        outputs: heads per variable (IAF uses 2: m and s).
        activation: the hidden layers' nonlinearity, a key of :data:`ACTIVATIONS`.
        init: ``masked`` (each unit's weights over its kept fan-in), ``input`` (so in the input layer,
            over all inputs in the later ones) or ``dense`` (over all inputs everywhere).
    """

    def __init__(self, features: int, hidden: int, depth: int = 1, context: int = 0,
                 degrees: Tensor | None = None, outputs: int = 2, activation: str = "elu", init: str = "masked"):
        super().__init__()
        self.features, self.outputs = features, outputs
        self.activation = ACTIVATIONS[activation][0]
        degrees = natural_order(features) if degrees is None else torch.as_tensor(degrees)
        if sorted(degrees.tolist()) != list(range(1, features + 1)):
            raise ValueError(f"degrees must be a permutation of 1..{features}, got {degrees.tolist()}")
        self.register_buffer("degrees", degrees.clone())
        hidden_degrees = torch.arange(hidden) % max(1, features - 1) + 1
        layers, previous = [], degrees
        for index in range(depth):
            mask = hidden_degrees[:, None] >= previous[None, :]
            layers.append(MaskedLinear(features if index == 0 else hidden, hidden, mask,
                                       "masked" if init == "masked" or (init == "input" and index == 0) else "dense"))
            previous = hidden_degrees
        self.hidden_layers = nn.ModuleList(layers)
        self.context = nn.Linear(context, hidden) if context else None
        # the first variable in the order has no hidden unit to read: h also reaches the outputs
        # directly, so every output depends on the context
        self.context_out = nn.Linear(context, outputs * features, bias=False) if context else None
        out_mask = (degrees[:, None] > hidden_degrees[None, :]).repeat(outputs, 1)
        self.out = MaskedLinear(hidden, outputs * features, out_mask, "masked" if init == "masked" else "dense")

    def forward(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        layers = iter(self.hidden_layers)  # (a slice of a ModuleList would build a new ModuleList per call)
        a = next(layers)(z)
        if self.context is not None and h is not None:
            a = a + self.context(h)
        a = self.activation(a)
        for layer in layers:
            a = self.activation(layer(a))
        out = self.out(a)
        if self.context_out is not None and h is not None:
            out = out + self.context_out(h)
        return out.view(z.shape[0], self.outputs, self.features)


@register_ar_conditioner
class MaskedConditioner(ARConditionerConfig):
    """The ``masked`` autoregressive conditioner: a :class:`MADE` of ``depth`` hidden layers of
    ``hidden`` units (``activation``, ELU by default), the context entering the first hidden layer and
    the outputs."""

    kind: Literal["masked"] = "masked"
    hidden: PositiveInt = 64
    depth: Annotated[int, Field(ge=1, le=8)] = 2
    activation: Activation = "elu"
    init: MaskedInit = "masked"

    def linears(self, features: int, outputs: int, context: int) -> list[tuple[int, int, bool]]:
        """``(in, out, bias)`` of the MADE's linears: hidden layers, output, context ones."""
        d, h, out = features, self.hidden, outputs * features
        layers = [(d if i == 0 else h, h, True) for i in range(self.depth)] + [(h, out, True)]
        if context:
            layers += [(context, h, True), (context, out, False)]
        return layers

    def cost(self, features: int, outputs: int, context: int) -> LayerCost:
        """One pass: dense matmuls ``2 i o`` each and ``a H`` per hidden layer (``a`` the activation's
        FLOPs per element: 4 for ELU); the masked weights ``W * M`` are built (and kept for backward)
        once per call, ``i o`` each."""
        linears = self.linears(features, outputs, context)
        matmul = sum(2.0 * i * o for i, o, _ in linears)
        masked = sum(i * o for i, o, _ in linears[: self.depth + 1])
        activation = ACTIVATIONS[self.activation][1] * self.hidden * self.depth
        return LayerCost(params=sum(i * o + (o if bias else 0) for i, o, bias in linears),
                         flops_forward=matmul + activation, matmul_flops_forward=matmul,
                         activations=features + self.hidden * self.depth * 2, call_activations=masked,
                         call_flops_forward=float(masked), ops=4 * self.depth + (3 if context else 0))

    def matmul_ops(self, features: int, outputs: int, context: int) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o, _ in self.linears(features, outputs, context)]

    def build(self, features: int, outputs: int, context: int, degrees: Tensor) -> MADE:
        return MADE(features, self.hidden, self.depth, context, degrees, outputs=outputs,
                    activation=self.activation, init=self.init)
