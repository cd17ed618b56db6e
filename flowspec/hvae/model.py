r"""HVAEModel: the compiled module of a ``model: hvae`` spec, the IAF-VAE of Kingma et al. 2016
(arXiv:1606.04934, sec. 6; openai/iaf).

With latent layers ``z_1 .. z_L`` (``z_L`` the top), a top-down prior and a posterior that shares
the top-down pass (bidirectional inference, :mod:`flowspec.hvae.networks`)::

    p(x, z) = p(x | z_1..z_L) prod_l p(z_l | z_>l)
    q(z | x) = prod_l q(z_l | x, z_>l)          (each a Gaussian refined by one IAF step)
    w = log p(x | z) + sum_l [log p(z_l | z_>l) - log q(z_l | x, z_>l)],   z ~ q(.|x)
    ELBO = E[w] <= IW_k = E[log (1/k) sum_j exp(w_j)] <= log P(x)    (Burda et al. 2016, arXiv:1509.00519)
    bits/dim = -ELBO / (D log 2)  (k = 1),  -IW_k / (D log 2)  (k > 1)

Free bits (sec. C.8): training minimises ``-log p(x|z) + sum_{l,c} max(kl_min, E_batch[KL_{l,c}])``
with ``KL_{l,c}`` the layer's one-draw KL summed over the pixels of channel ``c``: a channel whose
batch-averaged KL is under ``kl_min`` gets no gradient pulling it to the prior. That objective is
what :meth:`loss_per_dim` returns while the module is in training mode; in eval mode (and from
:meth:`bits_per_dim` always) it is the honest bound.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from flowspec.core.protocol import refuse_condition
from flowspec.data.levels import as_levels
from flowspec.hvae.graph import HVAEGraph, likelihood_params
from flowspec.hvae.networks import DownBlock, UpBlock, gaussian_log_prob
from flowspec.layers.weightnorm import DataInitConv2d, data_init
from flowspec.vae import likelihoods

MAX_ROWS = 1024  # examples x samples run through the top-down pass at once (importance weighting)


class HVAEModel(nn.Module):
    """Stem, bottom-up blocks, learned top, top-down blocks with their IAF steps, decoder."""

    #: what :meth:`loss_per_dim` measures (discrete levels)
    unit = "bits/dim"

    def __init__(self, hvae_graph: HVAEGraph):
        super().__init__()
        spec = hvae_graph.spec
        self.spec = spec
        self.input_shape = hvae_graph.input_shape
        self.levels = spec.input.levels
        self.likelihood = spec.likelihood
        self.latent_shapes = hvae_graph.latent_shapes
        self.kl_min = spec.kl_min
        layers = hvae_graph.layers
        channels, hidden, stem = self.input_shape[0], spec.hidden, spec.stem
        self.stem = DataInitConv2d(channels, hidden, stem.kernel, stem.stride)
        self.up = nn.ModuleList(UpBlock(hidden, spec.latent, layer.downsample, spec.residual_scale) for layer in layers)
        iaf = dict(hidden=spec.iaf_hidden, depth=spec.posterior.depth, kernel=spec.posterior.kernel) if spec.iaf else None
        self.down = nn.ModuleList(DownBlock(hidden, spec.latent, layer.downsample, spec.residual_scale,
                                            layer.resolution, iaf) for layer in layers)
        self.top = nn.Parameter(torch.zeros(hidden))
        self.params_per_entry = likelihood_params(spec)
        self.decoder = DataInitConv2d(hidden, channels * self.params_per_entry, stem.kernel, stem.stride,
                                      transposed=True)
        self.log_scale = nn.Parameter(torch.zeros(())) if spec.scale == "shared" else None
        self.register_buffer("_initialized", torch.tensor(False))

    @property
    def dims(self) -> int:
        return math.prod(self.input_shape)

    @property
    def depth(self) -> int:
        """L, the number of latent layers."""
        return len(self.up)

    # -- the two passes ------------------------------------------------------------------------
    def bottom_up(self, x: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Integer levels ``x`` -> per layer (bottom first) ``(qz_mean, qz_logsd, up_context)``."""
        h = self.stem(likelihoods.scale_levels(x, self.levels))
        out = []
        for block in self.up:
            h, *params = block(h)
            out.append(tuple(params))
        return out

    def top_down(self, n: int, choose: Callable[[int, DownBlock, tuple], Tensor]) -> Tensor:
        """The top-down pass for ``n`` examples: at each layer (top first) ``choose(l, block,
        params)`` returns the layer's ``z``; the result is the decoder's likelihood parameters."""
        _, height, width = self.latent_shapes[-1]
        h = self.top.view(1, -1, 1, 1).expand(n, -1, height, width)
        for index in reversed(range(self.depth)):
            block = self.down[index]
            params = block.params(h)
            h = block.merge(h, choose(index, block, params), params[5])
        return self.decode_params(h)

    def decode_params(self, h: Tensor) -> Tensor:
        """The stream at the stem's resolution -> likelihood parameters ``(B, C, H, W, P)``."""
        out = self.decoder(torch.nn.functional.elu(h))
        c, height, width = self.input_shape
        params = out.view(out.shape[0], c, self.params_per_entry, height, width).permute(0, 1, 3, 4, 2)
        if self.log_scale is not None:
            params = torch.cat([params, self.log_scale.expand_as(params)], -1)
        return params

    def posterior_pass(self, x: Tensor, samples: int = 1, eps: Sequence[Tensor] | None = None,
                       up: list | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``samples`` posterior draws per example (rows ``j * B + b``): ``(log p(x|z), KL maps per
        layer (rows, C, H, W) as log q - log p, z per layer)``; ``eps`` per layer given or drawn."""
        x = as_levels(x, self.levels, self.top.dtype)
        up = self.bottom_up(x) if up is None else up
        rows = samples * x.shape[0]
        repeat = (lambda t: t.repeat(samples, *([1] * (t.dim() - 1)))) if samples > 1 else (lambda t: t)
        kls: list[Tensor] = [torch.empty(0)] * self.depth
        zs: list[Tensor] = [torch.empty(0)] * self.depth

        def choose(index: int, block: DownBlock, params: tuple) -> Tensor:
            pz_mean, pz_logsd, rz_mean, rz_logsd, down_context, _ = params
            qz_mean, qz_logsd, up_context = (repeat(t) for t in up[index])
            mean, logsd = rz_mean + qz_mean, rz_logsd + qz_logsd
            noise = torch.randn_like(mean) if eps is None else eps[index]
            z = mean + torch.exp(logsd) * noise
            log_q = gaussian_log_prob(z, mean, logsd)
            if block.iaf is not None:
                z, logdet = block.iaf.entries(z, up_context + down_context)
                log_q = log_q - logdet
            kls[index] = log_q - gaussian_log_prob(z, pz_mean, pz_logsd)
            zs[index] = z
            return z

        params = self.top_down(rows, choose)
        log_px = self.likelihood.log_prob(params, repeat(x), self.levels)
        return log_px, kls, zs

    def log_weights(self, x: Tensor, samples: int = 1) -> Tensor:
        """``w = log p(x|z) + log p(z) - log q(z|x)`` for ``samples`` posterior draws: ``(batch,
        samples)``, in chunks of at most :data:`MAX_ROWS` rows (the bottom-up pass runs once)."""
        x = as_levels(x, self.levels, self.top.dtype)
        up = self.bottom_up(x)
        per_chunk = max(1, MAX_ROWS // x.shape[0])
        out = []
        for start in range(0, samples, per_chunk):
            count = min(per_chunk, samples - start)
            log_px, kls, _ = self.posterior_pass(x, count, up=up)
            w = log_px - sum(kl.flatten(1).sum(1) for kl in kls)
            out.append(w.view(count, x.shape[0]).t())
        return torch.cat(out, 1)

    # -- bounds --------------------------------------------------------------------------------
    def elbo(self, x: Tensor, samples: int = 1, *, condition=None) -> Tensor:
        """Monte Carlo ELBO in nats per example (mean over ``samples`` draws), shape ``(batch,)``."""
        refuse_condition(condition)
        return self.log_weights(x, samples).mean(1)

    def log_prob(self, x: Tensor, *, condition=None) -> Tensor:
        """The one-draw ELBO in nats per example: a lower bound on ``log P(x)`` (the exact
        density is intractable; :meth:`iw_log_likelihood` tightens it)."""
        return self.elbo(x, condition=condition)

    def iw_log_likelihood(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """Importance-weighted bound ``log (1/k) sum_j exp(w_j)`` in nats, shape ``(batch,)``."""
        refuse_condition(condition)
        return torch.logsumexp(self.log_weights(x, k), dim=1) - math.log(k)

    def bits_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """``-ELBO / (D log 2)`` per example with one draw (``k = 1``), the importance-weighted
        ``-IW_k / (D log 2)`` with ``k > 1``: both upper bounds on the true bits/dim."""
        if k > 1:
            return self.iw_bits_per_dim(x, k, condition=condition)
        return -self.elbo(x, condition=condition) / (self.dims * math.log(2))

    def iw_bits_per_dim(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """``-IW_k / (D log 2)`` per example: the tighter test figure."""
        return -self.iw_log_likelihood(x, k, condition=condition) / (self.dims * math.log(2))

    def free_bits_objective(self, x: Tensor) -> Tensor:
        """Per example, in nats: ``-log p(x|z) + sum_{l,c} KL'_{l,c}`` where ``KL'`` is the
        example's channel KL, or the constant ``kl_min`` for a channel whose batch mean is under
        ``kl_min`` (no gradient). Its batch mean is the free-bits objective of the module docstring."""
        log_px, kls, _ = self.posterior_pass(x)
        total = -log_px
        for kl in kls:
            per_channel = kl.flatten(2).sum(2)  # (B, C)
            if self.kl_min > 0:
                floor = per_channel.detach().mean(0, keepdim=True) < self.kl_min
                per_channel = torch.where(floor, torch.full_like(per_channel, self.kl_min), per_channel)
            total = total + per_channel.sum(1)
        return total

    def loss_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """Training mode with ``k = 1``: the free-bits objective per dim in bits (equal to
        :meth:`bits_per_dim` when ``kl_min`` is 0); otherwise :meth:`bits_per_dim`."""
        if self.training and k == 1 and self.kl_min > 0:
            refuse_condition(condition)
            return self.free_bits_objective(x) / (self.dims * math.log(2))
        return self.bits_per_dim(x, condition=condition, k=k)

    @torch.no_grad()
    def channel_kl(self, x: Tensor) -> Tensor:
        """Batch-averaged one-draw KL per layer and channel in nats, ``(L, C)`` (bottom first):
        a channel above a small threshold is active."""
        _, kls, _ = self.posterior_pass(x)
        return torch.stack([kl.flatten(2).sum(2).mean(0) for kl in kls])

    # -- generation ----------------------------------------------------------------------------
    def temperatures(self, temperature: float | Sequence[float]) -> list[float]:
        """One temperature per layer (bottom first) from a number or a sequence of ``L``."""
        if isinstance(temperature, (int, float)):
            return [float(temperature)] * self.depth
        values = [float(t) for t in temperature]
        if len(values) != self.depth:
            raise ValueError(f"temperature per layer needs {self.depth} values (bottom first), got {len(values)}")
        return values

    def generate(self, eps: Sequence[Tensor], temperature: float | Sequence[float] = 1.0) -> Tensor:
        """Sampling's deterministic part: likelihood parameters from standard normal ``eps`` per
        layer (bottom first), ``z_l = pz_mean + T_l exp(pz_logsd) eps_l`` top-down."""
        scales = self.temperatures(temperature)

        def choose(index: int, block: DownBlock, params: tuple) -> Tensor:
            return params[0] + scales[index] * torch.exp(params[1]) * eps[index]

        return self.top_down(eps[0].shape[0], choose)

    @torch.no_grad()
    def sample(self, n: int, *, condition=None, temperature: float | Sequence[float] = 1.0,
               generator: torch.Generator | None = None, mean: bool = True) -> Tensor:
        """``n`` samples in data space (levels, float): ancestral draws from the top-down prior
        with temperature ``T`` (one number, or one per layer, bottom first), then the most likely
        level of ``p(x|z)`` (``mean=True``) or a draw from it."""
        refuse_condition(condition)
        reference = self.top
        where = reference.device if generator is None else generator.device
        eps = [torch.randn((n, *shape), generator=generator, dtype=reference.dtype, device=where).to(reference.device)
               for shape in self.latent_shapes]
        params = self.generate(eps, temperature)
        if mean:
            return likelihoods.mode(self.likelihood, params, self.levels)
        return likelihoods.sample(self.likelihood, params, self.levels, generator)

    def to_data_space(self, y: Tensor) -> Tensor:
        """Samples are already in data space: the identity."""
        return y

    # -- latents -------------------------------------------------------------------------------
    @torch.no_grad()
    def posterior_means(self, x: Tensor) -> list[Tensor]:
        """Every layer's posterior centre (``eps = 0``, through its IAF step), bottom first."""
        x = as_levels(x, self.levels, self.top.dtype)
        eps = [x.new_zeros(x.shape[0], *shape) for shape in self.latent_shapes]
        return self.posterior_pass(x, eps=eps)[2]

    def decode_latents(self, zs: Sequence[Tensor]) -> Tensor:
        """The likelihood's parameters given every layer's ``z`` (bottom first)."""
        return self.top_down(zs[0].shape[0], lambda index, block, params: zs[index])

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return likelihoods.mode(self.likelihood, self.decode_latents(self.posterior_means(x)), self.levels)

    def encode(self, x: Tensor, **options):
        """The posterior centres of every layer: a :class:`~flowspec.core.latents.Latents`."""
        from flowspec.core.latents import encode

        return encode(self, x, **options)

    def decode(self, latents, **options) -> Tensor:
        """The most likely levels given :class:`~flowspec.core.latents.Latents`."""
        from flowspec.core.latents import decode

        return decode(self, latents, **options)

    # -- init ----------------------------------------------------------------------------------
    @torch.no_grad()
    def initialize(self, x: Tensor, *, condition=None) -> None:
        """Data-dependent init on one batch: every weight-normalised conv's gain and bias from
        the statistics of its output on a posterior pass (Salimans & Kingma 2016), then the
        decoder's bias and the shared log-scale at the data's per-channel marginal. Idempotent."""
        refuse_condition(condition)
        if self._initialized:
            return
        x = as_levels(x, self.levels, self.top.dtype)
        with data_init(self):
            self.posterior_pass(x)
        marginal = likelihoods.channel_marginal(self.likelihood, x.float(), self.levels)  # (C, P)
        bias = self.decoder.bias.view(self.input_shape[0], self.params_per_entry)
        bias.copy_(marginal[:, :self.params_per_entry].to(bias))
        if self.log_scale is not None:
            self.log_scale.fill_(marginal[:, -1].mean().item())
        self._initialized.fill_(True)

    @property
    def initialized(self) -> bool:
        return bool(self._initialized)


def weight_norm_convs(model: nn.Module) -> list[DataInitConv2d]:
    """Every weight-normalised conv of ``model`` (what data-dependent init sets)."""
    return [m for m in model.modules() if isinstance(m, DataInitConv2d)]
