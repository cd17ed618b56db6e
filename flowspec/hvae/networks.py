r"""The blocks of the hierarchical VAE (Kingma et al. 2016, arXiv:1606.04934, appendix C; openai/iaf's
``IAFLayer``), every conv weight-normalised with data-dependent init (:mod:`flowspec.layers.weightnorm`).

Bottom-up block (``s`` the residual scale, 0.1)::

    qz_mean, qz_logsd, up_context, t = split(conv_1(elu(h)))         # conv_1 has stride 2 when it downsamples
    h <- down(h) + s * conv_2(elu(t))                                  # down: nearest, every other pixel

Top-down block, given the bottom-up outputs (``eps ~ N(0, I)``)::

    pz_mean, pz_logsd, rz_mean, rz_logsd, down_context, h_det = split(conv_3(elu(h)))
    prior      p(z) = N(pz_mean, exp(pz_logsd)^2)
    posterior  q(z) = N(rz_mean + qz_mean, exp(rz_logsd + qz_logsd)^2)     (bidirectional inference)
    z = mean_q + sd_q * eps;  then one IAF step with context c = up_context + down_context:
    (m, s') = 0.1 * AR(z, c);  z <- (z - m) exp(-s');  log q <- log q + sum s'
    h <- up(h) + s * conv_4(elu([z, h_det]))                          # conv_4 transposed, stride 2 when it upsamples

An IAF step is the autoregressive layer (:class:`~flowspec.layers.autoregressive.AutoregressiveLayer`)
of a ``masked_conv`` conditioner and :class:`ShiftLogScale`, run in the sampling direction (``.inv``):
one pass from ``z`` to the refined ``z``, ``C H W`` passes back.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.layers.autoregressive import AutoregressiveLayer, Inverted
from flowspec.layers.masked_conv import MaskedConvConditioner, spatial_degrees
from flowspec.layers.transforms import ElementwiseTransform
from flowspec.layers.weightnorm import DataInitConv2d

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
IAF_OUTPUT_SCALE = 0.1  # openai/iaf scales the AR net's mean and log-sd by 0.1


def gaussian_log_prob(z: Tensor, mean: Tensor, logsd: Tensor) -> Tensor:
    """``log N(z; mean, exp(logsd)^2)`` per entry."""
    return -(HALF_LOG_2PI + logsd + 0.5 * ((z - mean) * torch.exp(-logsd)).pow(2))


class ShiftLogScale(ElementwiseTransform):
    r"""openai/iaf's IAF update with parameters ``(a, b)`` per entry, ``m = 0.1 a``, ``s = 0.1 b``:
    ``y = (x - m) exp(-s)``, log-det ``-s``; inverse ``x = y exp(s) + m``, log-det ``s``."""

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m, s = (IAF_OUTPUT_SCALE * params).unbind(1)
        return (x - m) * torch.exp(-s), -s

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        m, s = (IAF_OUTPUT_SCALE * params).unbind(1)
        return y * torch.exp(s) + m, s


class ConvIAFStep(nn.Module):
    """One IAF step over a latent map ``(C, H, W)`` with a context map: :attr:`flow` is
    ``AutoregressiveLayer(masked_conv, ShiftLogScale).inv``. ``forward(z, c)`` is the posterior's
    step, ``z -> (z', log|det dz'/dz|)`` in one pass; ``inverse`` takes ``C H W`` passes."""

    def __init__(self, channels: int, resolution: tuple[int, int], context: int, hidden: int, depth: int,
                 kernel: int):
        super().__init__()
        degrees = spatial_degrees(torch.arange(1, channels + 1), *resolution)
        net = MaskedConvConditioner(hidden=hidden, depth=depth, kernel=kernel).build(channels, 2, context, degrees)
        self.flow: Inverted = AutoregressiveLayer(net, ShiftLogScale()).inv

    @property
    def conditioner(self) -> nn.Module:
        return self.flow.layer.conditioner

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.flow.inverse(z, context)

    def entries(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward` with the log-det per entry (free bits count the KL per channel)."""
        return self.flow.layer.forward_entries(z, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.flow(z, context)


def halve(h: Tensor) -> Tensor:
    """Nearest-neighbour downsampling by 2: every other pixel."""
    return h[:, :, ::2, ::2]


class UpBlock(nn.Module):
    """The bottom-up block of one latent layer: ``h -> (h', qz_mean, qz_logsd, up_context)``."""

    def __init__(self, hidden: int, latent: int, downsample: bool, scale: float):
        super().__init__()
        self.hidden, self.latent, self.downsample, self.scale = hidden, latent, downsample, scale
        self.conv_in = DataInitConv2d(hidden, 2 * latent + 2 * hidden, 3, 2 if downsample else 1)
        self.conv_out = DataInitConv2d(hidden, hidden, 3)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z, c = self.latent, self.hidden
        qz_mean, qz_logsd, context, t = self.conv_in(F.elu(h)).split([z, z, c, c], dim=1)
        t = self.conv_out(F.elu(t))
        return (halve(h) if self.downsample else h) + self.scale * t, qz_mean, qz_logsd, context


class DownBlock(nn.Module):
    """The top-down block of one latent layer: :meth:`params` gives the prior's and posterior's
    parameters, the context and ``h_det``; :meth:`merge` puts ``z`` back into the stream; ``iaf``
    is the layer's IAF step (None for a diagonal posterior)."""

    def __init__(self, hidden: int, latent: int, downsample: bool, scale: float, resolution: tuple[int, int],
                 iaf: dict | None):
        super().__init__()
        self.hidden, self.latent, self.downsample, self.scale = hidden, latent, downsample, scale
        self.conv_in = DataInitConv2d(hidden, 4 * latent + 2 * hidden, 3)
        self.conv_out = DataInitConv2d(latent + hidden, hidden, 3, 2 if downsample else 1, transposed=downsample)
        self.iaf = None if iaf is None else ConvIAFStep(latent, resolution, hidden, **iaf)

    def params(self, h: Tensor) -> tuple[Tensor, ...]:
        """``(pz_mean, pz_logsd, rz_mean, rz_logsd, down_context, h_det)``."""
        z, c = self.latent, self.hidden
        return self.conv_in(F.elu(h)).split([z, z, z, z, c, c], dim=1)

    def merge(self, h: Tensor, z: Tensor, h_det: Tensor) -> Tensor:
        t = self.conv_out(F.elu(torch.cat([z, h_det], 1)))
        base = h.repeat_interleave(2, 2).repeat_interleave(2, 3) if self.downsample else h
        return base + self.scale * t
