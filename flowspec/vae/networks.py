r"""Encoder ``x -> (mu(x), sigma(x), h(x))`` and decoder ``z -> parameters of p(x|z)``.

The encoder sees the data scaled to ``[-1, 1]`` (``2 x / (n - 1) - 1`` for levels ``n``) and gives
``sigma = softplus(.) + 1e-4``; the reparameterised draw is ``z_0 = mu + sigma * eps``,
``eps ~ N(0, I)`` (Kingma & Welling 2014, arXiv:1312.6114). conv: 3x3 convs with ELU, each
halving the resolution while it is even and >= 4, then a linear layer; the conv decoder mirrors
it (linear layer, then nearest x2 upsampling + 3x3 conv per halving). mlp: dense layers with ELU.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.vae.config import VAESpec
from flowspec.vae.graph import conv_resolutions, likelihood_params
from flowspec.vae.likelihoods import scale_levels as scale_data  # noqa: F401  (shared with the hierarchical VAE)


class Encoder(nn.Module):
    def __init__(self, spec: VAESpec):
        super().__init__()
        cfg, shape = spec.encoder, tuple(spec.input.shape)
        self.levels, self.latent, self.context = spec.input.levels, spec.latent, cfg.context
        layers: list[nn.Module] = []
        if cfg.convolutional(shape):
            channels, (height, width) = shape[0], shape[1:]
            for stride, height, width in conv_resolutions(height, width, cfg.depth):
                layers += [nn.Conv2d(channels, cfg.hidden, 3, stride, 1), nn.ELU()]
                channels = cfg.hidden
            features = channels * height * width
        else:
            features = math.prod(shape)
            for _ in range(cfg.depth):
                layers += [nn.Linear(features, cfg.hidden), nn.ELU()]
                features = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.conv = cfg.convolutional(shape)
        self.head = nn.Linear(features, 2 * spec.latent + cfg.context)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` (integer levels) -> ``mu, sigma`` of shape ``(batch, latent)``, ``h`` ``(batch, context)``."""
        scaled = scale_data(x, self.levels)
        a = self.body(scaled if self.conv else scaled.flatten(1))
        out = self.head(a.flatten(1))
        mu, pre, h = out.split([self.latent, self.latent, self.context], dim=1)
        return mu, F.softplus(pre) + 1e-4, h


class Decoder(nn.Module):
    def __init__(self, spec: VAESpec):
        super().__init__()
        cfg, shape = spec.decoder, tuple(spec.input.shape)
        self.shape, self.params = shape, likelihood_params(spec)
        self.conv = cfg.convolutional(shape)
        if self.conv:
            resolutions = conv_resolutions(shape[1], shape[2], cfg.depth)
            _, height, width = resolutions[-1]
            self.start = (cfg.hidden, height, width)
            self.stem = nn.Linear(spec.latent, cfg.hidden * height * width)
            layers: list[nn.Module] = []
            for stride, _, _ in reversed(resolutions):
                if stride == 2:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                layers += [nn.Conv2d(cfg.hidden, cfg.hidden, 3, 1, 1), nn.ELU()]
            layers.append(nn.Conv2d(cfg.hidden, shape[0] * self.params, 3, 1, 1))
            self.body = nn.Sequential(*layers)
        else:
            layers, features = [], spec.latent
            for _ in range(cfg.depth):
                layers += [nn.Linear(features, cfg.hidden), nn.ELU()]
                features = cfg.hidden
            layers.append(nn.Linear(features, math.prod(shape) * self.params))
            self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """``z`` -> likelihood parameters of shape ``(batch, *input_shape, params)``."""
        if self.conv:
            a = F.elu(self.stem(z)).view(z.shape[0], *self.start)
            c, h, w = self.shape
            return self.body(a).view(z.shape[0], c, self.params, h, w).permute(0, 1, 3, 4, 2)
        return self.body(z).view(z.shape[0], *self.shape, self.params)
