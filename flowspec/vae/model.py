r"""VAEModel: the compiled PyTorch module of a ``model: vae`` spec.

Posterior (Kingma et al. 2016, arXiv:1606.04934)::

    mu, sigma, h = encoder(x);   eps ~ N(0, I);   z_0 = mu + sigma * eps
    log q(z_0|x) = sum_i log N(eps_i; 0, 1) - sum_i log sigma_i
    z_k = sigmoid(s_k) * z_{k-1} + (1 - sigmoid(s_k)) * m_k,  (m_k, s_k) = MADE_k(z_{k-1}, h)
    log q(z_k|x) = log q(z_{k-1}|x) - sum_i log sigmoid(s_k,i)

Bounds on the discrete ``log P(x)`` (``p(z) = N(0, I)``, ``p(x|z)`` normalised over the levels)::

    w = log p(x|z_K) + log p(z_K) - log q(z_K|x),  z_K ~ q(.|x)
    ELBO        = E[w]
    IW bound    = E[log (1/k) sum_j exp(w_j)]   (Burda et al. 2016, arXiv:1509.00519)
    bits/dim    = -ELBO / (D log 2)

ELBO <= IW_k <= IW_{k+1} <= log P(x) in expectation.

The model follows the protocol of every family (:class:`~flowspec.core.protocol.DensityModel`):
keyword-only ``condition=`` (a VAE is unconditional: only None), ``k=``, ``temperature=``;
``log_prob`` is the one-draw ELBO, a lower bound on ``log P(x)`` (the exact density is intractable).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowspec.core.protocol import legacy_positional, refuse_condition
from flowspec.data.levels import as_levels
from flowspec.vae import likelihoods
from flowspec.vae.graph import VAEGraph
from flowspec.vae.iaf import IAFStep
from flowspec.vae.networks import Decoder, Encoder

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``sum_i log N(z_i; 0, 1)``, shape ``(batch,)``."""
    return -(0.5 * z.pow(2) + HALF_LOG_2PI).sum(-1)


class VAEModel(nn.Module):
    """Encoder, IAF posterior steps, decoder and likelihood of a VAE spec."""

    def __init__(self, vae_graph: VAEGraph):
        super().__init__()
        spec = vae_graph.spec
        self.spec = spec
        self.input_shape = vae_graph.input_shape
        self.latent = spec.latent
        self.levels = spec.input.levels
        self.likelihood = spec.likelihood
        self.encoder = Encoder(spec)
        post = spec.posterior
        self.iaf = nn.ModuleList(  # one step per IAF node of the graph
            IAFStep(spec.latent, post.hidden, post.depth, spec.encoder.context, reverse=node.reverse,
                    gate_bias=post.gate_bias) for node in vae_graph.iaf_steps)
        self.decoder = Decoder(spec)
        self.register_buffer("_initialized", torch.tensor(False))

    #: what :meth:`loss_per_dim` measures (a VAE models discrete levels)
    unit = "bits/dim"

    @property
    def dims(self) -> int:
        return math.prod(self.input_shape)

    # -- the posterior ------------------------------------------------------------------------
    def posterior(self, eps: Tensor, mu: Tensor, sigma: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``eps -> (z_K, log q(z_K|x))`` given the encoder's outputs (all of batch size B)."""
        z = mu + sigma * eps
        log_q = standard_normal_log_prob(eps) - torch.log(sigma).sum(-1)
        for step in self.iaf:
            z, logdet = step(z, h)
            log_q = log_q - logdet
        return z, log_q

    def forward(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x -> (z_K, log q(z_K|x))`` with one posterior draw (``eps`` given or drawn)."""
        mu, sigma, h = self.encoder(x)
        eps = torch.randn_like(mu) if eps is None else eps
        return self.posterior(eps, mu, sigma, h)

    def log_weights(self, x: Tensor, samples: int = 1) -> Tensor:
        """``w = log p(x|z) + log p(z) - log q(z|x)`` for ``samples`` posterior draws: ``(batch, samples)``;
        ``x`` holds levels in ``[0, n)``, as integers of any dtype or as floats."""
        x = as_levels(x, self.levels, next(self.parameters()).dtype)
        batch = x.shape[0]
        mu, sigma, h = self.encoder(x)
        rep = lambda t: t.unsqueeze(0).expand(samples, *t.shape).reshape(samples * batch, *t.shape[1:])  # noqa: E731
        mu, sigma, h, xs = rep(mu), rep(sigma), rep(h), rep(x)
        z, log_q = self.posterior(torch.randn_like(mu), mu, sigma, h)
        log_px = likelihoods.log_prob(self.likelihood, self.decoder(z), xs, self.levels)
        w = log_px + standard_normal_log_prob(z) - log_q
        return w.view(samples, batch).t()

    # -- bounds -------------------------------------------------------------------------------
    def elbo(self, x: Tensor, samples: int = 1, *, condition=None) -> Tensor:
        """Monte Carlo ELBO in nats per example (mean over ``samples`` draws), shape ``(batch,)``."""
        refuse_condition(condition)
        return self.log_weights(x, samples).mean(1)

    def log_prob(self, x: Tensor, *, condition=None) -> Tensor:
        """The one-draw ELBO ``w`` in nats per example: a lower bound on ``log P(x)`` (a VAE's
        exact density is intractable; :meth:`iw_log_likelihood` tightens it)."""
        return self.elbo(x, condition=condition)

    def iw_log_likelihood(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """Importance-weighted bound ``log (1/k) sum_j exp(w_j)`` in nats, shape ``(batch,)``."""
        refuse_condition(condition)
        return torch.logsumexp(self.log_weights(x, k), dim=1) - math.log(k)

    @legacy_positional("k")
    def bits_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """``-ELBO / (D log 2)`` per example (one draw; the mean is the training loss); with
        ``k > 1`` the importance-weighted figure :meth:`iw_bits_per_dim` (what runners call for
        a tighter test number)."""
        if k > 1:
            return self.iw_bits_per_dim(x, k, condition=condition)
        return -self.elbo(x, condition=condition) / (self.dims * math.log(2))

    def loss_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """The training and evaluation figure in :attr:`unit`: :meth:`bits_per_dim`."""
        return self.bits_per_dim(x, condition=condition, k=k)

    def iw_bits_per_dim(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """``-IW_k / (D log 2)`` per example: the tighter test figure."""
        return -self.iw_log_likelihood(x, k, condition=condition) / (self.dims * math.log(2))

    # -- generation ---------------------------------------------------------------------------
    @legacy_positional("temperature", "generator", "mean")
    @torch.no_grad()
    def sample(self, n: int, *, condition=None, temperature: float = 1.0, generator: torch.Generator | None = None,
               mean: bool = True) -> Tensor:
        """``n`` samples in data space (levels ``0..n-1``, float): ``z ~ N(0, T^2 I)``, then the
        most likely level of ``p(x|z)`` (``mean=True``, clean pictures) or a draw from it."""
        refuse_condition(condition)
        reference = next(self.parameters())
        where = reference.device if generator is None else generator.device  # no host draw and copy on a GPU
        z = torch.randn((n, self.latent), generator=generator, dtype=reference.dtype, device=where).to(reference.device)
        params = self.generate(z, temperature)
        if mean:
            return likelihoods.mode(self.likelihood, params, self.levels)
        return likelihoods.sample(self.likelihood, params, self.levels, generator)

    def generate(self, z: Tensor, temperature: float = 1.0) -> Tensor:
        """Sampling's deterministic part: the likelihood's parameters ``decoder(T z)`` of standard
        normal draws ``z`` (what ``training.compile`` compiles)."""
        return self.decoder(temperature * z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior's centre (``eps = 0`` through the IAF steps) to its most likely levels."""
        mu, sigma, h = self.encoder(x)
        z, _ = self.posterior(torch.zeros_like(mu), mu, sigma, h)
        return likelihoods.mode(self.likelihood, self.decoder(z), self.levels)

    def to_data_space(self, y: Tensor) -> Tensor:
        """Samples are already in data space (see :meth:`sample`): the identity, for runners that
        treat a VAEModel like a FlowModel."""
        return y

    @torch.no_grad()
    def initialize(self, x: Tensor, *, condition=None) -> None:
        """Data-dependent init: the decoder's output bias starts at the data's per-element marginal
        (Bernoulli logit, categorical log-frequencies, logistic moment-matched to mean and std;
        averaged over pixels for a conv decoder). Idempotent: only the first call acts."""
        refuse_condition(condition)
        if self._initialized:
            return
        last = self.decoder.body[-1]
        x = as_levels(x, self.levels, next(self.parameters()).dtype).float()
        # statistics per element (mlp: one bias each) or per channel over pixels (conv: shared bias)
        if isinstance(last, nn.Conv2d):
            target = likelihoods.channel_marginal(self.likelihood, x, self.levels)
        else:
            target = self.likelihood.initial_params(x, self.levels)
        last.bias.copy_(target.reshape(-1).to(last.bias))
        last.weight.mul_(0.1)  # start near the marginal; the latent's influence grows in training
        self._initialized.fill_(True)

    @property
    def initialized(self) -> bool:
        return bool(self._initialized)

    # -- latent tools (flowspec.core.latents, through the VAE's codec) ------------------------
    def encode(self, x: Tensor, **options):
        """The posterior's centre of integer-valued ``x``: a :class:`~flowspec.core.latents.Latents`
        (see :func:`~flowspec.core.latents.encode` and :mod:`flowspec.vae.latents`)."""
        from flowspec.core.latents import encode

        return encode(self, x, **options)

    def decode(self, latents, **options) -> Tensor:
        """The most likely levels of :class:`~flowspec.core.latents.Latents`: ``decode(encode(x))``
        is the reconstruction (see :func:`~flowspec.core.latents.decode`)."""
        from flowspec.core.latents import decode

        return decode(self, latents, **options)
