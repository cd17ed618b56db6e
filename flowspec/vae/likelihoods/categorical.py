"""``likelihood: categorical``: ``levels`` logits per entry, ``log p = log softmax(logits)[x]``;
the mode is the argmax."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.vae.likelihoods.base import LikelihoodConfig, register_likelihood

MAX_LEVELS = 1024


@register_likelihood
class CategoricalLikelihood(LikelihoodConfig):
    kind: Literal["categorical"] = "categorical"

    def params_per_entry(self, levels: int) -> int:
        return levels

    def problems(self, levels: int) -> list[tuple[str, str]]:
        if levels > MAX_LEVELS:
            return [(f"categorical over {levels} levels is too wide", "use logistic")]
        return []

    def cost(self, shape: Shape, levels: int) -> LayerCost:
        """log-softmax over ``P = levels`` (max, sub, exp, sum, log): ``4 P`` FLOPs per entry and
        the sum; the mode, an argmax of ``P``; it keeps the log-softmax's ``P`` outputs and the
        int64 index (2 elements)."""
        n = numel(shape)
        return LayerCost(flops_forward=4.0 * levels * n + n, flops_inverse=float(levels) * n,
                         activations=levels * n + 2 * n, ops=6)

    def log_prob_elements(self, params: Tensor, x: Tensor, levels: int) -> Tensor:
        return torch.log_softmax(params, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params: Tensor, levels: int, generator=None) -> Tensor:
        flat = params.reshape(-1, params.shape[-1])
        draws = torch.multinomial(torch.softmax(flat, -1), 1, generator=generator)
        return draws.view(params.shape[:-1]).to(params.dtype)

    def mode(self, params: Tensor, levels: int) -> Tensor:
        return params.argmax(-1).to(params.dtype)

    def initial_params(self, x: Tensor, levels: int) -> Tensor:
        """The log-frequencies of the levels per column."""
        counts = torch.stack([(x == level).float().mean(0) for level in range(levels)], -1)
        return torch.log(counts + 1e-3)
