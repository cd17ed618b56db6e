"""The VAE family's latent codec (:class:`~flowspec.core.latents.LatentCodec`): a VAE has one
latent and no exact inverse.

encode: the posterior's centre ``z_K`` at ``eps = 0`` (``z_0 = mu(x)``, then the IAF steps), the
    point :meth:`VAEModel.reconstruct` decodes; no log-density is recorded (the model's figure is
    a bound, ``flowspec eval``).
decode: the most likely levels of ``p(x | z)``, so ``decode(encode(x))`` is the reconstruction,
    not ``x``. There is no value before flooring and no factored latent to redraw.
"""

from __future__ import annotations

from torch import Tensor

from flowspec.core.latents import LatentCodec
from flowspec.vae import likelihoods


def _encode(model, x: Tensor) -> tuple[list[Tensor], None]:
    return [model(x, eps=x.new_zeros(x.shape[0], model.latent))[0]], None


def _decode(model, zs: list[Tensor], temperature, generator) -> Tensor:
    return likelihoods.mode(model.likelihood, model.decoder(zs[0]), model.levels)


VAE_CODEC = LatentCodec(shapes=lambda model: [(model.latent,)], encode=_encode, decode=_decode,
                        to_data=lambda model, x: x)
