r"""``prior: {kind: mog}``: an autoregressive mixture of Gaussians as the top latent's base density,
MADE MoG (Papamakarios, Pavlakou & Murray 2017, arXiv:1705.07057, sec. 3.3 and the MAF MoG rows of
its tables; Uria et al. 2013 for the mixture-density autoregression).

With ``z`` the top latent flattened to ``D`` entries and ``(a_ik, m_ik, s_ik) = MADE(z, h)_i`` for
component ``k`` of ``K`` (a :class:`~flowspec.layers.made.MADE` with ``3K`` heads, so entry ``i``'s
mixture depends only on the entries before it, and on the condition's features ``h``):

log-density: ``log p(z | h) = sum_i logsumexp_k [log pi_ik - (z_i - m_ik)^2 / (2 e^{2 s_ik}) - s_ik - log(2 pi) / 2]``
             with ``log pi_i = log_softmax(a_i)``
sampling:    entry by entry in the natural order (``D`` MADE passes), ``z_i = F_i^{-1}(Phi(eps_i))``
             with ``F_i`` the mixture's CDF at temperature ``T`` (every component's standard deviation
             times ``T``), inverted by 60 bisection halvings: deterministic in the caller's noise
             ``eps``, as every prior's sampler.

At the start the output weights are zero and the means' biases spread the components over
``[-1, 1]`` (equal components would get equal gradients and never separate).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.core.costs import LayerCost, MatmulOp, Shape, numel
from flowspec.layers.made import MADE
from flowspec.priors.base import PriorConfig, register_prior

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


@register_prior
class MixturePriorConfig(PriorConfig):
    """``prior: {kind: mog, components, hidden, depth}``: MADE MoG."""

    kind: Literal["mog"] = "mog"
    components: Annotated[int, Field(ge=1, le=256)] = Field(10, description="K, Gaussians per entry")
    hidden: PositiveInt = Field(64, description="units per MADE hidden layer")
    depth: Annotated[int, Field(ge=1, le=8)] = Field(1, description="MADE hidden layers")

    def linears(self, shape: Shape, context: int) -> list[tuple[int, int, bool]]:
        d, h = numel(shape), self.hidden
        out = 3 * self.components * d
        layers = [(d if i == 0 else h, h, True) for i in range(self.depth)] + [(h, out, True)]
        if context:
            layers += [(context, h, True), (context, out, False)]
        return layers

    def matmul_ops(self, shape: Shape, context: int = 0) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o, _ in self.linears(shape, context)]

    def cost(self, shape: Shape, context: int = 0) -> LayerCost:
        """One MADE pass and, per entry and component, the Gaussian's log-density (~8) and the
        logsumexp and log-softmax (~8); sampling: ``D`` MADE passes and 60 bisection steps of the
        mixture's CDF (~10 per component each) per entry."""
        linears = self.linears(shape, context)
        d, k = numel(shape), self.components
        matmul = sum(2.0 * i * o for i, o, _ in linears)
        elementwise = 4.0 * self.hidden * self.depth
        masked = sum(i * o for i, o, _ in linears[: self.depth + 1])  # W * M, kept once per call
        return LayerCost(params=sum(i * o + (o if bias else 0) for i, o, bias in linears),
                         flops_forward=matmul + elementwise + 16.0 * d * k,
                         flops_inverse=d * (matmul + elementwise) + 600.0 * d * k,
                         matmul_flops_forward=matmul, matmul_flops_inverse=d * matmul,
                         # measured: the input, the hidden layers, ~5 tensors of (K, D) per example
                         activations=d + 2 * self.hidden * self.depth + 5 * d * k, ops=4 * self.depth + 14,
                         call_activations=masked, call_flops_forward=float(masked),
                         call_flops_inverse=float(d * masked))

    def build(self, shape: Shape, context: int = 0) -> "MixturePrior":
        return MixturePrior(shape, self.components, self.hidden, self.depth, context)


class MixturePrior(nn.Module):
    kind = "mog"

    def __init__(self, shape: Shape, components: int, hidden: int, depth: int, context: int = 0):
        super().__init__()
        self.shape, self.components = tuple(shape), components
        d = numel(shape)
        self.made = MADE(d, hidden, depth, context, outputs=3 * components)
        nn.init.zeros_(self.made.out.weight)
        with torch.no_grad():
            bias = self.made.out.bias.view(3, components, d)
            bias.zero_()
            if components > 1:
                bias[1] = torch.linspace(-1.0, 1.0, components).view(components, 1)
        if self.made.context_out is not None:
            nn.init.zeros_(self.made.context_out.weight)
        #: zeros of the latent's shape: the dtype and device reference every prior has
        self.register_buffer("mean", torch.zeros(1, *shape))

    def mixture(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi, m, s)``, each ``(batch, K, D)``, of every entry given the entries before it."""
        out = self.made(z.flatten(1), None if context is None else context.to(z.dtype))
        logits, means, log_stds = out.view(z.shape[0], 3, self.components, -1).unbind(1)
        return F.log_softmax(logits, dim=1), means, log_stds

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        log_pi, means, log_stds = self.mixture(z, context)
        scaled = (z.flatten(1).unsqueeze(1) - means) * torch.exp(-log_stds)
        per_component = log_pi - 0.5 * scaled.square() - log_stds - HALF_LOG_TWO_PI
        return torch.logsumexp(per_component, dim=1).sum(1)

    def generate(self, eps: Tensor, temperature: float, context: Tensor | None = None) -> Tensor:
        flat = eps.flatten(1)
        u = (0.5 * torch.special.erfc(-flat * (1 / math.sqrt(2)))).clamp(1e-12, 1 - 1e-12)  # Phi(eps)
        z = torch.zeros_like(flat)
        for i in range(flat.shape[1]):
            log_pi, means, log_stds = self.mixture(z.view(-1, *self.shape), context)
            weights, mean, std = log_pi[..., i].exp(), means[..., i], temperature * log_stds[..., i].exp()
            if temperature == 0:
                std = torch.full_like(std, 1e-12)
            low = (mean - 40 * std).min(1).values
            high = (mean + 40 * std).max(1).values
            for _ in range(60):
                middle = (low + high) / 2
                cdf = (weights * 0.5 * torch.special.erfc(-(middle[:, None] - mean) / (std * math.sqrt(2)))).sum(1)
                below = cdf < u[:, i]
                low, high = torch.where(below, middle, low), torch.where(below, high, middle)
            # one Newton step from the bisection's root, which carries the gradient of the implicit
            # function z_i(u, theta): dz/du = 1 / pdf (the step itself is ~0 at the root)
            root = ((low + high) / 2).detach()
            scaled = (root[:, None] - mean) / std
            cdf = (weights * 0.5 * torch.special.erfc(-scaled / math.sqrt(2))).sum(1)
            pdf = (weights * torch.exp(-0.5 * scaled ** 2) / (std * math.sqrt(2 * math.pi))).sum(1)
            z = z.clone()
            z[:, i] = root - (cdf - u[:, i]) / pdf.clamp_min(torch.finfo(pdf.dtype).tiny)
        return z.view(-1, *self.shape)
