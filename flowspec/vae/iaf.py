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

from flowspec.layers.made import MADE, natural_order


class IAFStep(nn.Module):
    """One IAF step over a latent of size ``features``; ``reverse`` flips the variable order."""

    def __init__(self, features: int, hidden: int, depth: int = 1, context: int = 0,
                 reverse: bool = False, gate_bias: float = 2.0, init_scale: float = 1e-2):
        super().__init__()
        self.made = MADE(features, hidden, depth, context, natural_order(features, reverse), outputs=2)
        with torch.no_grad():
            self.made.out.weight.mul_(init_scale)
            if self.made.context_out is not None:
                self.made.context_out.weight.mul_(init_scale)
            self.made.out.bias.zero_()
            self.made.out.bias[features:].fill_(gate_bias)

    def forward(self, z: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z_{k-1} -> (z_k, log|det dz_k/dz_{k-1}|)``, log-det of shape ``(batch,)``."""
        m, s = self.made(z, h).unbind(1)
        gate = torch.sigmoid(s)
        return gate * z + (1 - gate) * m, F.logsigmoid(s).sum(-1)

    def inverse(self, z: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``z_k -> (z_{k-1}, log|det dz_{k-1}/dz_k|)`` by D sequential passes."""
        order = torch.argsort(self.made.degrees)
        x = torch.zeros_like(z)
        for i in order.tolist():
            m, s = self.made(x, h).unbind(1)
            gate = torch.sigmoid(s[:, i])
            x = x.clone()
            x[:, i] = (z[:, i] - (1 - gate) * m[:, i]) / gate
        m, s = self.made(x, h).unbind(1)
        return x, -F.logsigmoid(s).sum(-1)
