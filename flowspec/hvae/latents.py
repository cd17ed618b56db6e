"""The hierarchical VAE's latent codec (:class:`~flowspec.core.latents.LatentCodec`): one latent
feature map per layer, bottom first (the top last), and no exact inverse.

encode: every layer's posterior centre (``eps = 0`` in each Gaussian, through its IAF step, the
    top-down pass conditioned on the centres above it); no log-density is recorded (the model's
    figure is a bound, ``flowspec eval``).
decode: the top-down pass with those latents, then the most likely levels of ``p(x | z)``:
    ``decode(encode(x))`` is the reconstruction, not ``x``.
"""

from __future__ import annotations

from torch import Tensor

from flowspec.core.latents import LatentCodec
from flowspec.vae import likelihoods


def _encode(model, x: Tensor) -> tuple[list[Tensor], None]:
    return model.posterior_means(x), None


def _decode(model, zs: list[Tensor], temperature, generator) -> Tensor:
    return likelihoods.mode(model.likelihood, model.decode_latents(zs), model.levels)


HVAE_CODEC = LatentCodec(shapes=lambda model: list(model.latent_shapes), encode=_encode, decode=_decode,
                         to_data=lambda model, x: x)
