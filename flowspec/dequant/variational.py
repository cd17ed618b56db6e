"""Variational dequantization (Flow++, Ho et al. 2019, arXiv:1902.00275, sec. 3.1).

``u = h(eps; x) = sigmoid(g_K o ... o g_1(eps; c(x)))``, ``eps ~ N(0, I)``, where ``c(x)`` is a
context network over the integer data and each step ``g_k`` is actnorm -> invertible 1x1 conv
(LU; skipped for a single channel) -> affine coupling whose conditioner sees ``(eps_b, c(x))``
(an ordinary coupling layer given ``c(x)`` as its context):

coupling:  ``(t, r) = NN(eps_b, c(x))``,  ``log s = c_s tanh(r / c_s)``,
           ``eps_a' = s * eps_a + t``,  ``eps_b' = eps_b``,  log-det ``sum(log s)``
sigmoid:   ``u = sigmoid(z)``,  log-det ``sum(log sigmoid(z) + log sigmoid(-z))``
density:   ``log q(u|x) = log N(eps; 0, I) - log|det dh/deps|``

Images use a checkerboard mask (alternating parity), vectors split the features in halves. The
conditioners' last layers are zero-initialised, so every coupling starts as the identity. ``u`` is
clamped to the largest float below 1, and ``v = x + u`` to the largest float below ``x + 1``
(:func:`~flowspec.dequant.uniform.in_bin`), so ``v`` always lies in ``x``'s bin ``[x, x + 1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.dequant.config import VariationalDequantization
from flowspec.dequant.uniform import in_bin
from flowspec.layers.actnorm import ActNormConfig
from flowspec.layers.conditioners import ChannelsLastNet, ConvConditioner, MLPConditioner
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.transforms import AffineTransform
from flowspec.layers.invconv import InvConvConfig

Shape = tuple[int, ...]
LOG_SCALE_CLAMP = 2.0


def context_network(config: VariationalDequantization, shape: Shape) -> nn.Module:
    ctx = config.context
    layers: list[nn.Module] = []
    width = shape[0]
    for _ in range(ctx.depth):
        if len(shape) == 3:
            layers += [nn.Conv2d(width, ctx.hidden, ctx.kernel, padding=ctx.kernel // 2), nn.ReLU()]
        else:
            layers += [nn.Linear(width, ctx.hidden), nn.ReLU()]
        width = ctx.hidden
    if len(shape) == 3:
        return ChannelsLastNet(*layers).to(memory_format=torch.channels_last)
    return nn.Sequential(*layers)


def step_coupling(shape: Shape, hidden: int, parity: int) -> CouplingConfig:
    """The coupling of step ``k`` (``parity = k % 2``): affine with the exp scale clamped at
    ``LOG_SCALE_CLAMP``, a checkerboard and a conv conditioner for images, a channel mask and an
    MLP for vectors; its conditioner also sees the context ``c(x)``."""
    affine = AffineTransform(scale="exp", clamp=LOG_SCALE_CLAMP)
    if len(shape) == 3:
        return CouplingConfig(transform=affine, mask="checkerboard", parity=parity,
                              conditioner=ConvConditioner(hidden=hidden))
    return CouplingConfig(transform=affine, mask="channel", parity=parity,
                          conditioner=MLPConditioner(hidden=[hidden, hidden]))


class VariationalDequantizer(nn.Module):
    """``forward(x) -> (v = x + u, log q(u|x))`` with ``u = h(eps; x)``, ``eps ~ N(0, I)``."""

    def __init__(self, config: VariationalDequantization, shape: Shape, levels: int):
        super().__init__()
        self.shape = tuple(shape)
        self.levels = levels
        self.context = context_network(config, self.shape)
        context = config.context_shape(self.shape)
        self.actnorms = nn.ModuleList()
        self.invconvs = nn.ModuleList()
        self.couplings = nn.ModuleList()
        for k in range(config.steps):
            self.actnorms.append(ActNormConfig(data_init=False).build(self.shape))
            if self.shape[0] >= 2:
                self.invconvs.append(InvConvConfig(lu=True, seed=k).build(self.shape))
            self.couplings.append(step_coupling(self.shape, config.hidden, k % 2).build(self.shape, context))

    def context_of(self, x: Tensor) -> Tensor:
        """``c(x)`` of integer data, fed in as ``x / (n - 1) - 1/2``."""
        return self.context(x / (self.levels - 1) - 0.5)

    def transform(self, eps: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, log|det du/deps|)`` of ``u = h(eps; x)``."""
        context = self.context_of(x)
        z, logdet = eps, eps.new_zeros(eps.shape[0])
        for k, (actnorm, coupling) in enumerate(zip(self.actnorms, self.couplings)):
            z, step = actnorm(z)
            logdet = logdet + step
            if len(self.invconvs):
                z, step = self.invconvs[k](z)
                logdet = logdet + step
            z, step = coupling(z, context)
            logdet = logdet + step
        logdet = logdet + (F.logsigmoid(z) + F.logsigmoid(-z)).flatten(1).sum(1)
        below_one = torch.nextafter(torch.ones((), dtype=z.dtype, device=z.device),
                                    torch.zeros((), dtype=z.dtype, device=z.device))
        return torch.sigmoid(z).clamp(max=below_one), logdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        eps = torch.randn_like(x)
        u, logdet = self.transform(eps, x)
        log_normal = -0.5 * (eps * eps + math.log(2 * math.pi)).flatten(1).sum(1)
        return in_bin(x, u), log_normal - logdet
