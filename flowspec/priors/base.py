"""The top-prior contract: the density of the flow's last latent (``prior:``).

A prior kind is a pydantic config with ``kind: Literal["name"]`` registered with
:func:`register_prior`, in one file with its module. It knows, as pure functions of the latent's
shape ``(C, H, W)`` / ``(D,)`` and the condition's feature count ``E`` (0: unconditional):

* ``cost(shape, context)`` / ``matmul_ops(shape, context)`` -- parameters, FLOPs, saved elements;
* ``conditionable`` -- whether a condition can shift it (``condition.prior: conditional``);

and ``build(shape, context)`` returns its module: ``log_prob(z, context) -> (batch,)`` and
``generate(eps, temperature, context) -> z``, deterministic in standard normal noise ``eps`` (the
contract every prior of :meth:`FlowModel.generate` and the exported sampler share); it holds
``mean`` (a parameter or a buffer), the dtype and device reference of the model.

A bare name (``prior: learned``) is short for ``{kind: learned}`` and is written back that way.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from flowspec.core.costs import LayerCost, MatmulOp, Shape, numel
from flowspec.layers.kinds import BareKind, Registry
from flowspec.layers.split import HALF_LOG_TWO_PI, gaussian_log_prob

PRIOR_KINDS = Registry("prior")


def register_prior(config: type["PriorConfig"]) -> type["PriorConfig"]:
    """Make a top-prior kind known to the spec language, the graph, the report and the tests."""
    return PRIOR_KINDS.register(config)


class PriorConfig(BareKind):
    """Base of every top-prior kind's config."""

    kind: str

    #: False for a prior with no mean and scale for a condition to shift
    conditionable: ClassVar[bool] = True

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:  # pragma: no cover
        raise NotImplementedError

    def matmul_ops(self, shape: Shape, context: int = 0) -> list[MatmulOp]:
        """The condition's linear ``W h`` (``E -> 2 n``), when there is one."""
        return [MatmulOp(context, 2 * numel(shape), 1, ())] if context else []

    def build(self, shape: Shape, context: int = 0) -> nn.Module:  # pragma: no cover
        raise NotImplementedError


def gaussian_cost(shape: Shape, context: int, learned: int) -> LayerCost:
    """``log N(z; mu, sigma)`` with ``learned`` parameters: about 6 FLOPs per entry; sampling
    ``mu + T sigma eps``: 3; with a condition, ``(mu, log sigma) += W h`` (``2 n E`` parameters,
    no bias)."""
    n = numel(shape)
    shift = 2 * n * context
    return LayerCost(params=learned + shift,
                     flops_forward=6.0 * n + 2.0 * shift, flops_inverse=3.0 * n + 2.0 * shift,
                     matmul_flops_forward=2.0 * shift, matmul_flops_inverse=2.0 * shift,
                     activations=n, ops=10 + (3 if shift else 0))


class GaussianPrior(nn.Module):
    """``N(mu, sigma)`` per entry: ``mu``, ``log sigma`` learned (``learned``, zero-initialised, of
    ``learned_shape``: one per entry, or one per channel broadcast over the pixels) or fixed at 0
    (``N(0, I)``); with ``context = E``, ``(mu, log sigma) += W h`` (``W`` zero-initialised,
    Glow's ycond). Sampling at temperature T: ``mu + T sigma eps``."""

    def __init__(self, shape: Shape, learned: bool, context: int = 0, kind: str = "",
                 learned_shape: tuple | None = None):
        super().__init__()
        self.kind = kind  # the config's, for callers that show it
        self.shape = tuple(shape)
        self.learned = learned
        self.context_net = nn.Linear(context, 2 * numel(shape), bias=False) if context else None
        if self.context_net is not None:
            nn.init.zeros_(self.context_net.weight)
        if learned:
            learned_shape = learned_shape or (1, *shape)
            self.mean = nn.Parameter(torch.zeros(learned_shape))
            self.log_std = nn.Parameter(torch.zeros(learned_shape))
        else:
            self.register_buffer("mean", torch.zeros(1, *shape))
            self.register_buffer("log_std", torch.zeros(1, *shape))

    def params(self, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma)``, shape ``(1 or batch, *shape)``."""
        if self.context_net is None or context is None:
            return self.mean, self.log_std
        shift = self.context_net(context.to(self.mean.dtype)).view(-1, 2, *self.shape)
        return self.mean + shift[:, 0], self.log_std + shift[:, 1]

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        if not self.learned and (self.context_net is None or context is None):
            return z.flatten(1).square().sum(1) * -0.5 - numel(z.shape[1:]) * HALF_LOG_TWO_PI  # no z[0] view op
        mean, log_std = self.params(context)
        return gaussian_log_prob(z, mean, log_std)

    def generate(self, eps: Tensor, temperature: float, context: Tensor | None = None) -> Tensor:
        mean, log_std = self.params(context)
        return mean + temperature * log_std.exp() * eps
