r"""Inverse autoregressive flow step (Kingma et al. 2016, arXiv:1606.04934, Eq. 11-14).

Forward (posterior direction, ``z_{k-1} -> z_k``)::

    (m, s) = MADE(z_{k-1}, h)        # m_i, s_i depend on z_j only for j before i in the order
    sigma  = sigmoid(s)
    z_k    = sigma * z_{k-1} + (1 - sigma) * m
    log|det dz_k/dz_{k-1}| = sum_i log sigma_i      (the Jacobian is triangular, diagonal sigma)

so ``log q(z_k|x) = log q(z_{k-1}|x) - sum_i log sigma_i``. Consecutive steps reverse the order.
The bias on ``s`` starts at ``gate_bias`` (+1..+2) and the output weights near zero, so every
step starts close to ``z_k = z_{k-1}`` (sigma ~ sigmoid(2) = 0.88 and m ~ 0).

Inverse (not needed by the VAE, given for completeness and tests): sequential in the order,
``z_{k-1,i} = (z_{k,i} - (1 - sigma_i) m_i) / sigma_i`` with ``(m, s)`` from the already
recovered earlier variables; D passes of MADE.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.layers.autoregressive import AutoregressiveLayer, Inverted, _renamed
from flowspec.layers.made import MaskedConditioner, natural_order
from flowspec.layers.transforms import ElementwiseTransform


class Gate(ElementwiseTransform):
    """IAF's update with parameters ``(m, s)`` per entry: ``y = sigma x + (1 - sigma) m``,
    ``sigma = sigmoid(s)``, log-det ``log sigma``; inverse ``x = (y - (1 - sigma) m) / sigma``."""

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m, s = params.unbind(1)
        gate = torch.sigmoid(s)
        return gate * x + (1 - gate) * m, F.logsigmoid(s)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m, s = params.unbind(1)
        gate = torch.sigmoid(s)
        return (y - (1 - gate) * m) / gate, -F.logsigmoid(s)


class IAFStep(nn.Module):
    """One IAF step over a latent of size ``features``; ``reverse`` flips the variable order.

    :attr:`flow` is the IAF as a flow layer over ``z`` (forward: ``z`` towards the noise, ``D``
    passes; inverse, the sampling direction: one pass): the autoregressive layer of a masked
    conditioner and :class:`Gate`, run the other way (``AutoregressiveLayer(...).inv``). The
    posterior's step ``z_{k-1} -> z_k`` is that sampling direction."""

    def __init__(self, features: int, hidden: int, depth: int = 1, context: int = 0,
                 reverse: bool = False, gate_bias: float = 2.0, init_scale: float = 1e-2):
        super().__init__()
        made = MaskedConditioner(hidden=hidden, depth=depth).build(features, 2, context,
                                                                    natural_order(features, reverse))
        with torch.no_grad():
            made.out.weight.mul_(init_scale)
            if made.context_out is not None:
                made.context_out.weight.mul_(init_scale)
            made.out.bias.zero_()
            made.out.bias[features:].fill_(gate_bias)
        self.flow: Inverted = AutoregressiveLayer(made, Gate()).inv
        self._register_load_state_dict_pre_hook(_renamed("made.", "flow.layer.conditioner."))

    @property
    def made(self) -> nn.Module:
        """The masked conditioner (MADE) computing ``(m, s)``."""
        return self.flow.layer.conditioner

    def forward(self, z: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z_{k-1} -> (z_k, log|det dz_k/dz_{k-1}|)``, log-det of shape ``(batch,)``: one pass."""
        return self.flow.inverse(z, h)

    def inverse(self, z: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z_k -> (z_{k-1}, log|det dz_{k-1}/dz_k|)`` by D sequential passes."""
        return self.flow(z, h)
