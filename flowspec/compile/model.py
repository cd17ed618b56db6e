"""FlowModel: the compiled PyTorch module of a flow spec.

``forward(x) -> (zs, logdet)`` maps data to the latents, one per split plus the top one (data ->
latent; ``logdet = log|det dz/dx|``, shape ``(batch,)``); ``inverse(zs) -> (x, logdet)`` maps them
back. ``log p(x) = sum_i log p_i(z_i | ...) + logdet``.

On discrete data the model sees ``y = (x + u) / n - 1/2`` (``centred``) and
``bits/dim = -(E_q[log p(y) - log q(u|x)] - D log n) / (D log 2)``. Continuous data
(``input.data: continuous``) is modelled as it is: ``nats/dim = -log p(x) / D``.

Noise augmentation (``training.noise: sigma``, TarFlow: Zhai et al. 2024, arXiv:2412.06329): in
training mode the model sees ``y + sigma eps``, ``eps ~ N(0, I)``, after dequantization and
preprocessing, so it learns the density ``p_sigma`` of the noisy data; every evaluation (eval mode)
scores ``y`` itself under that density, which is still a density, so the figure stays a bound on the
data's likelihood (of the noisy model). :meth:`FlowModel.denoise` is Tweedie's one-step denoiser
``x + sigma^2 grad log p_sigma(x)`` (Robbins 1956; Efron 2011), with the flow's own gradient.

A conditional spec (``condition:``) models ``p(x | c)``: every method of the model protocol
(:class:`~flowspec.core.protocol.DensityModel`) takes the condition as ``condition=`` (class labels
``(batch,)`` or context vectors ``(batch, dim)``), embeds it once into the features ``h = e(c)`` and
hands ``h`` to every layer and prior. A condition is required exactly when the spec has one
(:class:`~flowspec.errors.ConditionError` otherwise). ``forward`` / ``inverse`` / ``generate`` keep
the module convention of a positional ``context``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowspec.compile.condition import check_condition
from flowspec.compile.invertible_backprop import run_layers
from flowspec.core.protocol import legacy_positional
from flowspec.data.levels import as_levels
from flowspec.dequant import ToModelSpace
from flowspec.errors import ConditionError, FlowSpecError
from flowspec.graph.build import FlowGraph
from flowspec.core.costs import numel


def _plus(total: Tensor | None, term: Tensor) -> Tensor:
    return term if total is None else total + term


def _built(node) -> nn.Module | None:
    return None if node is None else node.build()


class FlowModel(nn.Module):
    def __init__(self, flow_graph: FlowGraph):
        super().__init__()
        spec = flow_graph.spec
        self.spec = spec
        self.names = [node.name for node in flow_graph.layers]
        self.condition_config = getattr(spec, "condition", None)
        # every module is its graph node's build() (modules made in the order they always were, so
        # a seed gives the same initial weights)
        #: c -> h, the features every layer sees (None for an unconditional spec)
        self.condition = _built(flow_graph.condition)
        self.layers = nn.ModuleList(node.build() for node in flow_graph.layers)
        self.latent_shapes = flow_graph.latent_shapes
        self.input_shape = flow_graph.input_shape
        self.top_prior = flow_graph.top_prior.build()
        self.continuous = bool(getattr(spec.input, "continuous", False))
        #: a table's typed columns: x -> v (discrete ones dequantized) -> y on the real line, or None
        self.columns = _built(flow_graph.columns)
        #: what :meth:`loss_per_dim` measures
        self.unit = "nats/dim" if self.continuous else "bits/dim"
        self.levels = spec.input.levels
        self.centred = getattr(spec.dequantization, "centred", True)
        self.dequantizer = _built(flow_graph.dequantizer)
        preprocess = getattr(spec, "preprocess", None)
        #: v = x + u -> model space (scale, or RealNVP's logit), with its log-det
        self.model_space = ToModelSpace(self.levels, self.centred,
                                        preprocess.alpha if preprocess is not None else None)
        training = getattr(spec, "training", None)
        #: sigma of the noise added to the model's input in training (``training.noise``; 0: none)
        self.noise = float(training.noise) if training is not None else 0.0
        memory = getattr(spec, "memory", None)
        #: recompute step activations by inversion in backward (``memory: {invertible_backprop}``)
        self.invertible_backprop = bool(memory and memory.invertible_backprop)
        #: ``(start, stop, factors_out)``: the graph's runs of layers between factoring nodes
        self.runs = flow_graph.invertible_runs

    # -- the condition -----------------------------------------------------------------------
    def features(self, c, batch: int | None, like: Tensor) -> Tensor | None:
        """The features ``h = e(c)`` of the condition ``c`` for a batch of ``batch`` (None when the
        model is unconditional); raises :class:`~flowspec.errors.ConditionError` when ``c`` is
        missing, unexpected or malformed."""
        c = check_condition(self.condition_config, c, batch, like.device, like.dtype)
        if c is None:
            return None
        h = self.condition(c)
        return h if h.dtype == like.dtype else h.to(like.dtype)

    # -- the flow: layers are graph nodes (encode / decode / generate); a node may factor out a latent
    def _encode(self, x: Tensor, context=None) -> tuple[list[Tensor], Tensor, Tensor]:
        """``(zs, logdet, log p(zs))``; with ``invertible_backprop`` each run of layers between
        factoring nodes (the graph's :attr:`~flowspec.graph.build.FlowGraph.invertible_runs`)
        recomputes its activations by inversion in backward."""
        context = self.features(context, x.shape[0], x)
        zs: list[Tensor] = []
        logdet = log_pz = None  # sums started by their first term (no zeros and adds to dispatch)
        invertible = self.invertible_backprop and torch.is_grad_enabled()
        for step in (self._runs() if invertible else self.layers):
            if isinstance(step, list):  # a run of layers, recomputed by inversion in backward
                x, run_logdet = run_layers(step, x, invertible=True, context=context)
                logdet = _plus(logdet, run_logdet)
                continue
            x, step_logdet, factored = step.encode(x, context)
            logdet = _plus(logdet, step_logdet)
            if factored is not None:
                zs.append(factored.latent)
                log_pz = _plus(log_pz, factored.log_prob)
        zs.append(x)
        if logdet is None:
            logdet = x.new_zeros(x.shape[0])
        return zs, logdet, _plus(log_pz, self.top_prior.log_prob(x, context))

    def _runs(self) -> list:
        """The layers grouped by :attr:`runs`: a list of modules per run, a factoring layer alone."""
        layers = list(self.layers)
        return [layers[start] if factors else layers[start:stop] for start, stop, factors in self.runs]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """``x -> (zs, logdet)``: latents (factored ones in order, top last) and ``log|det dz/dx|``."""
        zs, logdet, _ = self._encode(x, context)
        return zs, logdet

    def inverse(self, zs: list[Tensor], context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``zs -> (x, logdet)`` with ``logdet = log|det dx/dz| = -forward's``."""
        factored = list(zs[:-1])
        x = zs[-1]
        context = self.features(context, x.shape[0], x)
        logdet = x.new_zeros(x.shape[0])
        for layer in reversed(self.layers):
            x, step_logdet = layer.decode(x, factored.pop() if layer.factors_out else None, context)
            logdet = logdet + step_logdet
        return x, logdet

    @legacy_positional("condition", renamed={"context": "condition"})
    def log_prob(self, x: Tensor, *, condition=None) -> Tensor:
        """``log p(x | c)`` of continuous ``x`` (in model space), shape ``(batch,)``."""
        _, logdet, log_pz = self._encode(x, condition)
        return log_pz + logdet

    def generate(self, eps: list[Tensor], temperature: float = 1.0, context: Tensor | None = None,
                 guidance: float = 0.0) -> Tensor:
        """Sampling direction, deterministic in the noise: ``eps`` are standard normal draws of the
        latents' shapes; every prior's standard deviation is scaled by ``temperature``. With
        ``guidance`` ``w != 0`` (classifier-free guidance) every guided node (``tarflow``, ``coupling``) mixes its
        parameters ``theta_c + w (theta_c - theta_0)`` given the condition and the null condition."""
        factored = list(eps[:-1])
        null = self.null_features(guidance, eps[-1]) if guidance else None
        context = self.features(context, eps[-1].shape[0], eps[-1])
        x = self.top_prior.generate(eps[-1], temperature, context)
        for layer in reversed(self.layers):
            latent = factored.pop() if layer.factors_out else None
            if null is None:
                x = layer.generate(x, latent, temperature, context)
            else:
                x = layer.generate_guided(x, latent, temperature, context, null, guidance)
        return x

    def null_features(self, guidance: float, like: Tensor) -> Tensor:
        """The null condition's features ``h_0`` for a batch like ``like`` (see :meth:`check_guidance`)."""
        self.check_guidance(guidance)
        return self.condition.null_features(like.shape[0]).to(like.dtype)

    def check_guidance(self, guidance: float) -> None:
        """A :class:`~flowspec.errors.ConditionError` (one line naming the spec field) when guidance
        ``w`` cannot apply: not finite, no condition, or no null condition (``condition.drop: 0``)."""
        if not math.isfinite(guidance):
            raise ConditionError(f"guidance {guidance} is not a finite number")
        if self.condition_config is None:
            raise ConditionError(f"guidance {guidance:g} needs a conditional model; this spec has no condition: "
                                 "(add condition: {kind: class, classes: N, drop: 0.1} and train it)")
        problem = self.condition_config.null_problem()
        if problem is not None:
            raise ConditionError(f"guidance {guidance:g}: {problem}")

    @legacy_positional("temperature", "generator", "condition", renamed={"c": "condition"})
    @torch.no_grad()
    def sample(self, n: int, *, condition=None, temperature: float = 1.0,
               generator: torch.Generator | None = None, guidance: float = 0.0, denoise: bool = False) -> Tensor:
        """``n`` samples in model space (:meth:`to_data_space` maps them to levels), drawn from
        ``p(x | c)`` for a conditional model (``condition``: a label or context for all ``n``, or
        one per sample); ``guidance`` ``w``: classifier-free guidance (a model trained with
        ``condition.drop > 0``; 0 samples ``p(x | c)`` as it is); ``denoise``: each passed through
        :meth:`denoise` (a model trained with ``training.noise``)."""
        if denoise:
            self._noise_level(None)  # refuse before drawing
        reference = self.top_prior.mean
        where = reference.device if generator is None else generator.device  # no host draw and copy on a GPU
        eps = [torch.randn((n, *shape), generator=generator, dtype=reference.dtype, device=where).to(reference.device)
               for shape in self.latent_shapes]
        x = self.generate(eps, temperature, condition, guidance)
        return self.denoise(x, condition=condition) if denoise else x

    def _noise_level(self, sigma: float | None) -> float:
        if sigma is None:
            if not self.noise:
                raise FlowSpecError("denoising needs the noise level the model was trained at: this spec has no "
                                    "training.noise (train with training.noise: SIGMA, or pass sigma=)")
            return self.noise
        if not (math.isfinite(sigma) and sigma >= 0):
            raise FlowSpecError(f"sigma must be a finite number >= 0, got {sigma}")
        return float(sigma)

    def score(self, x: Tensor, *, condition=None) -> Tensor:
        """``grad_x log p(x | c)`` per example, the flow's own gradient (``x`` in model space)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_p = self.log_prob(x, condition=condition)
            grad, = torch.autograd.grad(log_p.sum(), x)
        return grad

    def denoise(self, x: Tensor, *, condition=None, sigma: float | None = None) -> Tensor:
        """Tweedie's one-step denoiser ``x_hat = x + sigma^2 grad_x log p_sigma(x | c)``: for a
        model of the noisy data ``y + sigma eps`` it is the posterior mean ``E[y | y + sigma eps =
        x]`` (exact when ``p_sigma`` is). ``x`` in model space (as :meth:`sample` returns it);
        ``sigma``: the spec's ``training.noise`` unless given."""
        sigma = self._noise_level(sigma)
        if sigma == 0:
            return x
        return (x + sigma ** 2 * self.score(x, condition=condition)).detach()

    # -- discrete data ------------------------------------------------------------------------
    def to_model_space(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``y = v / n (- 1/2)`` and its log-det ``-D log n``; with ``preprocess: {kind: logit}``
        ``y = logit(alpha + (1 - 2 alpha) v / n)`` and its log-det (:class:`ToModelSpace`).
        Continuous data: the identity, log-det 0; a table with typed columns: each column's map
        to the real line (:class:`~flowspec.columns.TypedColumns`) and its log-det."""
        if self.continuous:
            if self.columns is not None:
                return self.columns(v)
            return v, v.new_zeros(v.shape[0])
        return self.model_space(v)

    def to_data_space(self, y: Tensor) -> Tensor:
        """Inverse of :meth:`to_model_space` followed by rounding down to the data's levels
        (continuous data: ``y`` as it is; typed columns: each column's inverse map, discrete
        columns rounded down)."""
        if self.continuous:
            if self.columns is not None:
                return self.columns.to_data(self.columns.inverse(y)[0])
            return y
        return self.model_space.inverse(y).floor().clamp(0, self.levels - 1)

    @property
    def dequantizes(self) -> bool:
        """The figure is a dequantization bound (discrete data, or a table with discrete columns):
        it is random per call and an importance-weighted estimate tightens it."""
        return not self.continuous or (self.columns is not None and self.columns.dequantizes)

    @legacy_positional("condition", renamed={"c": "condition"})
    def elbo(self, x: Tensor, *, condition=None) -> Tensor:
        """One-sample bound ``log p(v | c) - log q(u|x) <= log P(x | c)`` in nats, per example; ``x``
        holds levels in ``[0, n)``, as integers of any dtype or as floats; for continuous data
        ``log p(x | c)`` exactly; for a table with typed columns ``log p(y | c) + log|dy/dv|`` at
        ``v = x + u`` (``u ~ U[0, 1)`` on discrete columns, 0 elsewhere: exact without them)."""
        if self.continuous:
            if self.columns is None:
                return self.log_prob(self._noisy(x), condition=condition)
            y, column_logdet = self.columns(self.columns.dequantize(x))
            return self.log_prob(self._noisy(y), condition=condition) + column_logdet
        x = as_levels(x, self.levels, self.top_prior.mean.dtype)
        v, log_q = self.dequantizer(x)
        y, scale_logdet = self.to_model_space(v)
        return self.log_prob(self._noisy(y), condition=condition) + scale_logdet - log_q

    def _noisy(self, y: Tensor) -> Tensor:
        """``y + sigma eps`` in training mode with ``training.noise``; ``y`` otherwise."""
        return y + self.noise * torch.randn_like(y) if self.training and self.noise else y

    @legacy_positional("condition", renamed={"c": "condition"})
    def nats_per_dim(self, x: Tensor, *, condition=None) -> Tensor:
        """``-log p(x | c) / D`` per example (continuous data; on discrete data the dequantized
        bound's ``-elbo / D``)."""
        return -self.elbo(x, condition=condition) / numel(self.input_shape)

    @legacy_positional("condition", renamed={"c": "condition"})
    def loss_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """The training and evaluation figure per example in :attr:`unit`: bits/dim for discrete
        data (importance-weighted with ``k > 1``), nats/dim for continuous data (exact, so ``k``
        does not apply, but for a table with discrete columns, whose bound it importance-weights)."""
        if self.continuous:
            if k > 1 and self.dequantizes:
                return -self.iw_log_likelihood(x, k, condition=condition) / numel(self.input_shape)
            return self.nats_per_dim(x, condition=condition)
        return self.bits_per_dim(x, condition=condition, k=k)

    def _repeat(self, c, n: int, batch: int):
        if c is None:
            return None
        c = torch.as_tensor(c)
        if self.condition_config.is_one(c):
            return c  # one condition for the whole batch
        return c.unsqueeze(0).expand(n, *c.shape).reshape(n * batch, *c.shape[1:])

    def log_weights(self, x: Tensor, k: int, c=None) -> Tensor:
        """``log p(v_j) - log q(u_j|x)`` for ``k`` dequantization draws, shape ``(batch, k)``; the
        draws run in chunks of at most ~4096 examples."""
        chunk = max(1, min(k, 4096 // max(1, x.shape[0])))
        weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            repeated = x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])
            weights.append(self.elbo(repeated, condition=self._repeat(c, n, x.shape[0])).view(n, x.shape[0]))
        return torch.cat(weights).T

    @legacy_positional("k", "condition", keep=1, renamed={"c": "condition"})
    def iw_log_likelihood(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """Importance-weighted bound ``log (1/k) sum_j p(v_j) / q(u_j|x)`` in nats per example; it
        is ``<= log P(x)``, ``>=`` the one-draw bound on average, and tightens as ``k`` grows."""
        return torch.logsumexp(self.log_weights(x, k, condition), dim=1) - math.log(k)

    @legacy_positional("condition", "k", renamed={"c": "condition"})
    def bits_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor:
        """``-elbo / (D log 2)`` per example, for integer-valued data ``x`` (given ``condition`` for
        a conditional model); with ``k > 1`` the importance-weighted figure :meth:`iw_bits_per_dim`."""
        if k > 1 and self.dequantizes:
            return self.iw_bits_per_dim(x, k, condition=condition)
        return -self.elbo(x, condition=condition) / (numel(self.input_shape) * math.log(2))

    @legacy_positional("k", "condition", keep=1, renamed={"c": "condition"})
    def iw_bits_per_dim(self, x: Tensor, k: int = 64, *, condition=None) -> Tensor:
        """``-iw_log_likelihood(x, k) / (D log 2)`` per example."""
        return -self.iw_log_likelihood(x, k, condition=condition) / (numel(self.input_shape) * math.log(2))

    @legacy_positional("condition", renamed={"c": "condition"})
    @torch.no_grad()
    def initialize(self, x: Tensor, *, condition=None) -> None:
        """Run actnorm's data-dependent init on a batch of data (integer levels of any dtype, or
        real values for continuous data), with its conditions."""
        if not self.continuous:
            x = as_levels(x, self.levels, self.top_prior.mean.dtype)
        was_training = self.training
        self.train()
        if self.continuous:
            self.log_prob(self._noisy(x if self.columns is None else self.columns(self.columns.dequantize(x))[0]),
                          condition=condition)
        else:
            v, _ = self.dequantizer(x)
            self.log_prob(self._noisy(self.to_model_space(v)[0]), condition=condition)
        self.train(was_training)

    @property
    def initialized(self) -> bool:
        return all(bool(getattr(m, "initialized", True)) for m in self.modules() if m is not self)

    # -- latent tools (flowspec.core.latents, through the flow's codec) -----------------------
    def encode(self, x: Tensor, **options):
        """Every latent of integer-valued ``x``, encoded at the bins' centres, with ``log p``:
        a :class:`~flowspec.core.latents.Latents` (see :func:`~flowspec.core.latents.encode`)."""
        from flowspec.core.latents import encode

        return encode(self, x, **options)

    def decode(self, latents, **options) -> Tensor:
        """Integer levels of :class:`~flowspec.core.latents.Latents`; ``decode(encode(x)) == x``
        (see :func:`~flowspec.core.latents.decode`)."""
        from flowspec.core.latents import decode

        return decode(self, latents, **options)
