"""The flow family's latent codec (:data:`FLOW_CODEC`): how a flow's data and latents map.

encode (data ``x in {0..n-1}^D``, one point per bin: its centre):
    ``v = x + 1/2``, ``(y, log|dy/dv|) = to_model_space(v)``, ``(z_1, ..., z_L) = f(y)``,
    ``log p(v) = sum_i log p_i(z_i | ...) + log|det df/dy| + log|dy/dv|``.
decode: ``y = f^{-1}(z_1, ..., z_L)``, ``x = floor(v(y))`` clamped to ``0..n-1``.

The tools over any family's latents (``encode``, ``decode``, ``interpolate``, ``manipulate``,
:class:`Latents`, :class:`Direction`) live in :mod:`flowspec.core.latents`; their names stay
importable from here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowspec.core.latents import (DIRECTION_FORMAT, LATENTS_FORMAT, Direction, LatentCodec, Latents,
                                   attribute_direction, check_data, check_latents, check_supported, codec, decode,
                                   encode, interpolate, latent_shapes, manipulate, round_trip_error,
                                   spec_fingerprint)

__all__ = ["FLOW_CODEC", "DIRECTION_FORMAT", "LATENTS_FORMAT", "Direction", "LatentCodec", "Latents",
           "attribute_direction", "check_data", "check_latents", "check_supported", "codec", "decode",
           "encode", "interpolate", "latent_shapes", "manipulate", "round_trip_error", "spec_fingerprint"]


def _flow_encode(model, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """``x + 1/2 -> y -> (z_1 .. z_L)`` and ``log p(v) = log p(y) + log|dy/dv|``."""
    y, scale_logdet = model.to_model_space(x + 0.5)
    return model(y)[0], model.log_prob(y) + scale_logdet


def _flow_decode(model, zs: list[Tensor], temperature: float | None, generator: torch.Generator | None) -> Tensor:
    """The model-space point of ``zs``: the inverse, or with ``temperature`` :meth:`FlowModel.generate`
    from the given top latent, each node that factors out a latent drawing it as
    ``mu + T sigma eps`` from its prior given the part above it."""
    if temperature is None:
        return model.inverse(zs)[0]
    top = zs[-1]
    eps = [torch.randn((top.shape[0], *shape), generator=generator, dtype=top.dtype).to(top.device)
           for shape in model.latent_shapes[:-1]]
    x = top
    for layer in reversed(model.layers):
        x = layer.generate(x, eps.pop() if layer.factors_out else None, temperature)
    return x


#: the flow family's :class:`LatentCodec` (registered on its ``Family`` record)
FLOW_CODEC = LatentCodec(shapes=lambda model: model.latent_shapes, encode=_flow_encode, decode=_flow_decode,
                         to_data=lambda model, y: model.to_data_space(y),
                         to_continuous=lambda model, y: model.model_space.inverse(y))
