"""Split: factor out half of the channels to a learned conditional prior (Glow / RealNVP multiscale).

A node with two outputs (:meth:`Split.encode`): the kept part and the factored latent with its prior.

encode:   ``z_1, z_2 = x[:c1], x[c1:]``; ``z_1`` goes on through the flow, ``z_2`` is a latent
decode:   ``x = concat(z_1, z_2)``; ``logdet = 0`` (a partition)
prior:    ``z_2 ~ N(mu, sigma)`` with ``(mu, log sigma) = ZeroConv(z_1)`` (``conditional``), or
          ``N(0, I)`` (``standard``). Sampling at temperature T draws ``mu + T sigma eps``.
          Given a condition's features ``h`` (``context``), ``(mu, log sigma) += W h`` per channel,
          ``W`` zero-initialised (Glow's ycond, arXiv:1807.03039).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from flowspec.errors import RuleViolation
from flowspec.layers.base import (ContextShape, FlowLayer, LayerConfig, Factored, LayerCost, MatmulOp, Shape,
                                  numel, register)


HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """``sum_d -((z_d - mu_d) / sigma_d)^2 / 2 - log sigma_d - log(2 pi) / 2`` per example, written out
    (``torch.distributions.Normal`` builds ``sigma^2`` with ``pow`` and a division, measured slower on
    small vectors)."""
    scaled = (z - mean) * torch.exp(-log_std)
    return (-0.5 * scaled.square() - log_std - HALF_LOG_TWO_PI).flatten(1).sum(1)


def kept_channels(channels: int) -> int:
    return channels - channels // 2


@register
class SplitConfig(LayerConfig):
    kind: Literal["split"] = "split"
    prior: Literal["conditional", "standard"] = "conditional"
    factors_out = True
    reads_context = True  # its prior's (mu, log sigma) += W h

    def output_shape(self, shape: Shape) -> Shape:
        if shape[0] < 2:
            what = "channels" if len(shape) == 3 else "features"
            raise RuleViolation(f"split needs at least 2 {what} to divide, got {shape[0]}",
                                hint="squeeze before splitting, or remove this split")
        return (kept_channels(shape[0]),) + shape[1:]

    def factored_shape(self, shape: Shape) -> Shape:
        return (shape[0] // 2,) + shape[1:]

    @property
    def prior_sees_kept(self) -> bool:
        """True when the factored latent's prior is a function of the kept entries."""
        return self.prior == "conditional"

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the kept channels, the factored ones): ``z_1, z_2 = x[:c1], x[c1:]``."""
        kept = kept_channels(shape[0])
        return marks[:kept], marks[kept:]

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        base = self._cost(shape)
        if not context:
            return base
        shift = 2 * (shape[0] // 2) * context[0]  # W h: a linear from the features to 2 F, no bias
        return LayerCost(**{**base.__dict__, "params": base.params + shift,
                            "flops_forward": base.flops_forward + 2.0 * shift,
                            "flops_inverse": base.flops_inverse + 2.0 * shift,
                            "matmul_flops_forward": base.matmul_flops_forward + 2.0 * shift,
                            "matmul_flops_inverse": base.matmul_flops_inverse + 2.0 * shift, "ops": base.ops + 2})

    def _cost(self, shape: Shape) -> LayerCost:
        if self.prior == "standard":
            return LayerCost(flops_forward=3.0 * numel(self.factored_shape(shape)), ops=12)
        kept, factored = kept_channels(shape[0]), shape[0] // 2
        spatial = numel(shape[1:])
        kernel = 9 if len(shape) == 3 else 1
        matmul = 2.0 * kept * 2 * factored * kernel * spatial
        return LayerCost(params=kept * 2 * factored * kernel + 2 * factored,
                         flops_forward=matmul + 6.0 * factored * spatial,
                         flops_inverse=matmul + 3.0 * factored * spatial,
                         matmul_flops_forward=matmul, matmul_flops_inverse=matmul,
                         activations=2 * factored * spatial,
                         ops=14)  # 2 slices, prior conv, chunk, exp, Normal log_prob, sum, add

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        kept, factored = kept_channels(shape[0]), shape[0] // 2
        ops = [MatmulOp(context[0], 2 * factored, 1, ())] if context else []
        if self.prior != "conditional":
            return ops
        return [MatmulOp(kept, 2 * factored, 3 if len(shape) == 3 else 1, tuple(shape[1:]))] + ops

    def build(self, shape: Shape, context: ContextShape = None) -> "Split":
        return Split(shape, self.prior, context[0] if context else 0)


class Split(FlowLayer):
    factors_out = True

    def __init__(self, shape: Shape, prior: str = "conditional", context: int = 0):
        super().__init__()
        self.kept = kept_channels(shape[0])
        self.factored = factored = shape[0] // 2
        self.prior_net: nn.Module | None = None
        self.context_net = nn.Linear(context, 2 * factored, bias=False) if context else None
        if self.context_net is not None:
            nn.init.zeros_(self.context_net.weight)
        if prior == "conditional":
            if len(shape) == 3:
                self.prior_net = nn.Conv2d(self.kept, 2 * factored, 3, padding=1)
            else:
                self.prior_net = nn.Linear(self.kept, 2 * factored)
            nn.init.zeros_(self.prior_net.weight)
            nn.init.zeros_(self.prior_net.bias)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, : self.kept], x[:, self.kept:]

    def join(self, kept: Tensor, factored: Tensor) -> Tensor:
        return torch.cat([kept, factored], dim=1)

    def prior(self, kept: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma)`` of the factored part given the kept part (and the condition)."""
        if self.prior_net is None:
            params = kept.new_zeros((kept.shape[0], 2 * self.factored) + kept.shape[2:])
        else:
            params = self.prior_net(kept)
        if self.context_net is not None and context is not None:
            shift = self.context_net(context.to(kept.dtype))
            params = params + shift.view(*shift.shape, *(1,) * (kept.dim() - 2))
        return params.chunk(2, dim=1)

    def log_prob(self, kept: Tensor, factored: Tensor, context: Tensor | None = None) -> Tensor:
        mean, log_std = self.prior(kept, context)
        return gaussian_log_prob(factored, mean, log_std)

    def encode(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Factored]:
        kept, factored = self.split(x)
        return kept, x.new_zeros(x.shape[0]), Factored(factored, self.log_prob(kept, factored, context))

    def decode(self, y: Tensor, latent: Tensor | None, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.join(y, latent), y.new_zeros(y.shape[0])

    def generate(self, y: Tensor, eps: Tensor | None, temperature: float,
                 context: Tensor | None = None) -> Tensor:
        mean, log_std = self.prior(y, context)
        return self.join(y, mean + temperature * log_std.exp() * eps)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise TypeError("Split factors out a latent: a model runs it as a node (encode / decode)")

    inverse = forward
