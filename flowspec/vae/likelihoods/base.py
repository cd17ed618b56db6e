r"""The likelihood contract of a VAE: a discrete ``p(x|z)`` over the input's levels
``x in {0..n-1}^D``, normalised over the levels, so ``-log p(x|z)`` is a code length in nats and the
VAE's bits/dim is comparable to a flow's (which includes ``-D log n`` from dequantization).

A likelihood kind is a pydantic config with ``kind: Literal["name"]`` registered with
:func:`register_likelihood`, in one file. It knows:

* ``params_per_entry(levels)`` -- ``P``, the decoder's outputs per data entry;
* ``problems(levels)`` -- ``(message, hint)`` pairs for levels it cannot model;
* ``cost(shape, levels)`` -- FLOPs of ``log p`` (training) and of the mode (sampling), saved elements;
* ``log_prob_elements(params, x, levels)``, ``sample(params, levels, generator)``,
  ``mode(params, levels)`` with ``params`` of shape ``(batch, *x.shape[1:], P)``;
* ``initial_params(x, levels)`` -- per column of ``x`` (rows are draws), the ``P`` parameters of
  the data's marginal (the decoder's output bias starts there).

A bare name (``likelihood: logistic``) is short for ``{kind: logistic}`` and is written back that way.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from flowspec.core.costs import LayerCost, Shape
from flowspec.layers.kinds import BareKind, Registry

LIKELIHOOD_KINDS = Registry("likelihood")


def register_likelihood(config: type["LikelihoodConfig"]) -> type["LikelihoodConfig"]:
    """Make a likelihood kind known to the VAE spec, its graph, report and tests."""
    return LIKELIHOOD_KINDS.register(config)


class LikelihoodConfig(BareKind):
    """Base of every likelihood kind's config."""

    kind: str = Field(description="the likelihood kind")

    #: its last parameter per entry is a log-scale, which a model may learn as one shared number
    #: (the hierarchical VAE's ``scale: shared``)
    shareable_log_scale: ClassVar[bool] = False

    def params_per_entry(self, levels: int) -> int:  # pragma: no cover
        raise NotImplementedError

    def problems(self, levels: int) -> list[tuple[str, str]]:
        return []

    def cost(self, shape: Shape, levels: int) -> LayerCost:  # pragma: no cover
        raise NotImplementedError

    def log_prob_elements(self, params: Tensor, x: Tensor, levels: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor, levels: int) -> Tensor:
        """``log p(x|z)`` summed over the data elements, shape ``(batch,)``."""
        return self.log_prob_elements(params, x, levels).flatten(1).sum(1)

    def sample(self, params: Tensor, levels: int, generator=None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def mode(self, params: Tensor, levels: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def initial_params(self, x: Tensor, levels: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError


def scale_levels(x: Tensor, levels: int) -> Tensor:
    """Integer levels ``0..n-1`` -> ``[-1, 1]`` (``2 x / (n - 1) - 1``), the scale every likelihood's
    parameters and the networks' inputs share (:func:`to_levels` is its inverse, rounded)."""
    return x * (2.0 / (levels - 1)) - 1.0


def to_levels(y: Tensor, levels: int) -> Tensor:
    """``y in [-1, 1]`` to the nearest level ``0..n-1``."""
    return torch.round((y + 1.0) * (levels - 1) / 2.0).clamp(0, levels - 1)
