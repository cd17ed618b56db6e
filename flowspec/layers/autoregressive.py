r"""One autoregressive contract: an order x an autoregressive conditioner x an elementwise transform.

With ``pi`` the variable order (ranks ``degrees``) and ``theta = C(x, h)`` a conditioner whose
output for variable ``i`` depends on ``x_j`` only for ``pi(j) < pi(i)`` (and on the context ``h``
freely), the layer is

forward:  ``y_i = tau(x_i; theta_i(x))``, one conditioner pass for every ``i`` at once;
inverse:  ``x_i = tau^{-1}(y_i; theta_i(x))`` in the order, ``D`` passes (pass ``k`` fixes the
          variable of rank ``k``, whose parameters depend only on variables already fixed);
log-det:  ``sum_i log|tau'(x_i; theta_i)|``: the Jacobian is triangular in the order.

``maf`` (Papamakarios et al. 2017, arXiv:1705.07057) is this layer with a masked conditioner
(MADE) read in the density direction. The VAE's IAF step (Kingma et al. 2016, arXiv:1606.04934)
is the same layer run in the sampling direction, :attr:`AutoregressiveLayer.inv` (as
``torch.distributions.Transform.inv``): sampling an IAF is one pass, evaluating its density ``D``.
A coupling is the two-pass case: a conditioner that gives one half every degree below the other's.

The conditioner slot is a registry (:data:`AR_CONDITIONER_KINDS`): ``masked`` (MADE) over vectors,
``masked_conv`` over the channels and pixels of a feature map (the hierarchical VAE's IAF, whose
variables ``x`` are ``(B, C, H, W)`` with degrees ``(C, H, W)``), and ``causal_transformer``
(TarFlow, :mod:`flowspec.layers.causal_transformer`), whose variables may be the tokens of a
sequence ``(N, D)``: token ``i``'s ``D`` entries share its degree.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from flowspec.layers.base import FlowLayer, LayerCost, MatmulOp
from flowspec.layers.kinds import Registry

AR_CONDITIONER_KINDS = Registry("autoregressive conditioner")


def register_ar_conditioner(config: type["ARConditionerConfig"]) -> type["ARConditionerConfig"]:
    """Make an autoregressive conditioner kind known to autoregressive layers and the tests."""
    return AR_CONDITIONER_KINDS.register(config)


class ARConditionerConfig(BaseModel):
    """Base of every autoregressive conditioner kind's config.

    ``build(features, outputs, context, degrees)`` returns a module ``(x, h) -> (batch, outputs,
    features)`` whose output for variable ``i`` reads ``x_j`` only for ``degrees[j] <
    degrees[i]``; it keeps ``degrees`` as a buffer. ``cost`` / ``matmul_ops`` are one pass."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    kind: str

    def build(self, features: int, outputs: int, context: int, degrees: Tensor) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def cost(self, features: int, outputs: int, context: int) -> LayerCost:  # pragma: no cover
        raise NotImplementedError

    def matmul_ops(self, features: int, outputs: int, context: int) -> list[MatmulOp]:  # pragma: no cover
        raise NotImplementedError


class AutoregressiveLayer(FlowLayer):
    """``forward(x, h) -> (y, logdet)`` in one conditioner pass; ``inverse`` in ``D``."""

    def __init__(self, conditioner: nn.Module, transform: nn.Module):
        super().__init__()
        self.conditioner = conditioner
        self.transform = transform
        self._register_load_state_dict_pre_hook(_renamed("made.", "conditioner."))

    @property
    def made(self) -> nn.Module:
        """The conditioner (a MADE for ``maf`` and the IAF), by its older name."""
        return self.conditioner

    @property
    def inv(self) -> "Inverted":
        """This layer run the other way: forward is this inverse, inverse this forward."""
        return Inverted(self)

    @staticmethod
    def _sum(logdet: Tensor | None, like: Tensor) -> Tensor:
        return like.new_zeros(like.shape[0]) if logdet is None else logdet.flatten(1).sum(1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, logdet = self.forward_entries(x, context)
        return y, self._sum(logdet, x)

    def forward_entries(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """:meth:`forward` with the log-det per entry ``log|tau'(x_i)|`` (``None``: all 0), before
        the sum over an example's entries (a hierarchical VAE's free bits need it per channel)."""
        return self.transform(x, self.conditioner(x, context))

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``D`` conditioner passes: pass ``k`` fixes the variable of rank ``k``; the last pass's
        parameters are final for every variable. ``degrees`` has the shape of one example: ``(D,)``
        for vectors, ``(C, H, W)`` for a feature map's variables (``masked_conv``), or ``(N,)`` for
        the tokens of a sequence ``(N, D)`` (broadcast over each token's channels)."""
        degrees = self.conditioner.degrees
        degrees = degrees.view(*degrees.shape, *(1,) * (y.dim() - 1 - degrees.dim()))
        x = torch.zeros_like(y)
        logdet = None
        for rank in range(1, degrees.numel() + 1):
            candidate, logdet = self.transform.inverse(y, self.conditioner(x, context))
            x = torch.where(degrees == rank, candidate, x)
        return x, self._sum(logdet, y)


class Inverted(FlowLayer):
    """``layer.inv``: forward is ``layer.inverse``, inverse is ``layer.forward`` (log-dets follow)."""

    def __init__(self, layer: FlowLayer):
        super().__init__()
        self.layer = layer

    @property
    def inv(self) -> FlowLayer:
        return self.layer

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.layer.inverse(x, context)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.layer(y, context)


def _renamed(old: str, new: str):
    """A load-state-dict pre-hook reading keys saved under an older submodule name."""
    def hook(state_dict, prefix, *args):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
    return hook
