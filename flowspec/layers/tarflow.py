r"""``tarflow``: a TarFlow block, an autoregressive affine flow over a token sequence whose parameters a
causal transformer computes (Zhai et al. 2024, "Normalizing Flows are Capable Generative Models",
arXiv:2412.06329; code apple/ml-tarflow).

On tokens ``x_1 .. x_N`` (a sequence ``(N, D)`` from ``patchify``, or a vector ``(D,)`` whose
entries are tokens of one channel) in the order ``pi`` (``natural`` or ``reversed``: TarFlow flips
the direction from one block to the next), with ``theta_i = T(x_{pi < pi(i)}, h)`` the
:class:`~flowspec.layers.causal_transformer.CausalTransformer`'s shifted output:

forward (density):  ``z_i = tau(x_i; theta_i)``, one transformer pass for every token at once;
inverse (sampling): ``x_i = tau^{-1}(z_i; theta_i)`` in the order, token by token;
log-det:            ``sum_i sum_d log|tau'(x_{i,d}; theta_{i,d})|`` (block-triangular Jacobian).

``tau`` defaults to TarFlow's affine map ``z = (x - mu) exp(-alpha)``, written as ``affine`` with
``order: shift_scale`` (``z = (x + t) s``, ``t = -mu``, ``log s = -alpha``), ``log s`` soft-clamped to
``[-c, c]`` (``clamp``). The first token's parameters are 0: it passes unchanged.

Sampling (``sampling:``) decodes the inverse three ways, all giving the same ``x``:

* ``cached``: one token at a time, each new token's keys and values appended to a KV cache; the
  whole inverse costs about one transformer pass;
* ``recompute``: ``N`` full passes (each recomputes the prefix), the generic autoregressive inverse;
* ``jacobi``: the fixed-point iteration ``x^{t+1} = tau^{-1}(z; theta(x^t))`` over blocks of
  ``block`` tokens (the whole sequence by default), each block until its largest change is at most
  ``tolerance`` or after ``iterations`` passes (default: its length, after which it is exact:
  pass ``k`` fixes the token of rank ``k``). :attr:`TarFlowLayer.last_iterations` holds the passes
  the last inverse used.

Guidance (:meth:`TarFlowLayer.generate_guided`, TarFlow's classifier-free guidance): each step's
parameters ``theta = theta_c + w (theta_c - theta_0)`` mix those given the condition's features and
those given the null condition's.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

import numpy as np
import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.errors import RuleViolation
from flowspec.layers.autoregressive import AutoregressiveLayer
from flowspec.layers.base import ContextShape, LayerConfig, LayerCost, MatmulOp, Shape, register
from flowspec.layers.causal_transformer import CausalTransformerConditioner
from flowspec.layers.conditioners import context_channels
from flowspec.layers.made import natural_order
from flowspec.layers.transforms import AffineTransform, Transform

BYTES_FLOAT32 = 4


def _tarflow_affine() -> AffineTransform:
    return AffineTransform(scale="exp", order="shift_scale", clamp=4.0)


@register
class TarFlowConfig(LayerConfig):
    kind: Literal["tarflow"] = "tarflow"
    accepts: ClassVar[str] = "any"  # a token sequence (N, D) or a vector (D,), checked below
    reads_context = True  # added to every token's embedding
    width: PositiveInt = Field(64, description="the causal transformer's width C")
    layers: Annotated[int, Field(ge=1, le=64)] = Field(2, description="attention + MLP layers of the block's transformer")
    heads: Annotated[int, Field(ge=1, le=256)] = Field(1, description="attention heads; they must divide width")
    expansion: Annotated[int, Field(ge=1, le=16)] = Field(4, description="MLP hidden width / width")
    position: Literal["learned", "sinusoidal"] = Field("learned", description="position embedding of the tokens")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="residual dropout after each attention and MLP of the transformer (training only)")
    order: Literal["natural", "reversed"] = Field(
        "natural", description="the token order; TarFlow alternates natural and reversed between blocks")
    transform: Transform = Field(default_factory=_tarflow_affine,
                                 description="elementwise transform: TarFlow's affine (x - mu) exp(-alpha) by default")
    sampling: Literal["cached", "recompute", "jacobi"] = Field(
        "cached", description="how the inverse decodes: a KV cache, one token at a time; recomputing the prefix "
                              "for every token; or Jacobi fixed-point iteration")
    tolerance: Annotated[float, Field(ge=0)] = Field(1e-6, description="jacobi: stop a block when no entry moves more")
    iterations: Optional[PositiveInt] = Field(None, description="jacobi: at most this many passes per block "
                                                                "(default: the block's length, which is exact)")
    block: Optional[PositiveInt] = Field(None, description="jacobi: tokens per block (default: the whole sequence)")

    def check_input(self, shape: Shape) -> None:
        if len(shape) not in (1, 2):
            raise RuleViolation(f"tarflow needs a token sequence (N, D) or a vector (D,), got {shape}",
                                hint="patchify an image first (- {kind: patchify, patch: p})")

    def conditioner(self) -> CausalTransformerConditioner:
        return CausalTransformerConditioner(width=self.width, layers=self.layers, heads=self.heads,
                                            expansion=self.expansion, position=self.position,
                                            dropout=self.dropout)

    @staticmethod
    def tokens(shape: Shape) -> tuple[int, int]:
        """``(N, D)``: a vector's entries are tokens of one channel."""
        return (shape[0], 1) if len(shape) == 1 else (shape[0], shape[1])

    def output_shape(self, shape: Shape) -> Shape:
        problem = self.conditioner().heads_problem()
        if problem:
            raise RuleViolation(problem, hint=f"use a head count that divides {self.width}", field=("heads",))
        n, _ = self.tokens(shape)
        if n < 2:
            raise RuleViolation(f"a sequence of {n} token has nothing to be autoregressive over",
                                hint="use a smaller patch (more tokens)")
        if self.block is not None and self.block > n:
            raise RuleViolation(f"jacobi block {self.block} is longer than the sequence ({n} tokens)",
                                field=("block",))
        return shape

    def degrees(self, tokens: int) -> Tensor:
        return natural_order(tokens, reverse=self.order == "reversed")

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        """Forward: one transformer pass and the transform on ``N D`` entries. Inverse (the
        ``sampling`` decoder): ``cached`` about one pass (the ``N - 1`` tokens a later one reads
        through each linear, attention over the cache: the causal half of the square), ``recompute``
        ``N`` passes, ``jacobi`` its iteration cap's passes (an upper bound: it stops when converged)."""
        n, d = self.tokens(shape)
        p = self.transform.params_per_entry
        net = self.conditioner().cost_tokens(n, d, p, context_channels(context))
        entry = self.transform.cost()
        passes = self.inverse_passes(n)
        inverse_matmul = net.matmul_flops_forward * passes
        inverse = (net.flops_forward + entry.flops_inverse * n * d) * passes
        if self.sampling == "cached":
            inverse_matmul = self.conditioner().cached_matmul_flops(n, d, p, context_channels(context))
            inverse = inverse_matmul + (net.flops_forward - net.matmul_flops_forward) + entry.flops_inverse * n * d
        return LayerCost(params=net.params + entry.params,
                         flops_forward=net.flops_forward + entry.flops_forward * n * d,
                         flops_inverse=inverse, matmul_flops_forward=net.matmul_flops_forward,
                         matmul_flops_inverse=inverse_matmul, flops_logdet=entry.flops_logdet * n * d,
                         activations=int(net.activations + p * n * d + entry.saved * n * d),
                         ops=net.ops + 6 + entry.ops)

    def inverse_passes(self, tokens: int) -> float:
        """Transformer passes one inverse costs at most, in units of a full forward pass."""
        if self.sampling == "cached":
            return 1.0
        if self.sampling == "recompute":
            return float(tokens)
        block = self.block or tokens
        return float(-(-tokens // block) * (self.iterations or block))

    def report_notes(self, shape: Shape, context: ContextShape = None) -> list[str]:
        """Attention's share of the forward FLOPs, the KV cache, and the inverse's cost per decoder."""
        n, d = self.tokens(shape)
        conditioner = self.conditioner()
        net = conditioner.cost_tokens(n, d, self.transform.params_per_entry, context_channels(context))
        attention = conditioner.attention_flops(n)
        cache = conditioner.kv_cache_elements(n) * BYTES_FLOAT32
        jacobi = int(self.model_copy(update={"sampling": "jacobi"}).inverse_passes(n))
        return [f"attention (QK^T, AV) {_flops(attention)} of {_flops(net.flops_forward)} FLOPs per example "
                f"per pass; KV cache {_bytes(cache)} per example in float32 (2 x {self.layers} layers x {n} tokens "
                f"x width {self.width})",
                f"sampling per example: cached {_flops(net.flops_forward)} (one pass), recompute "
                f"{_flops(n * net.flops_forward)} ({n} passes), jacobi at most {_flops(jacobi * net.flops_forward)} "
                f"({jacobi} passes; fewer when it converges); this block samples with {self.sampling}"]

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        return self.conditioner().matmul_ops(self.tokens(shape), self.transform.params_per_entry,
                                             context_channels(context))

    def narrow(self, width: int) -> "TarFlowConfig":
        narrow = self.conditioner().narrow(width)
        return self.model_copy(update={"width": narrow.width, "heads": narrow.heads})

    def random_field(self) -> tuple | None:
        return self.conditioner().random_field()  # its fields are this layer's own (dropout)

    def dependent_entries(self, shape: Shape) -> np.ndarray:
        """Every token but the first in the order (its parameters are 0)."""
        n, _ = self.tokens(shape)
        first = self.degrees(n).numpy() > 1
        return first if len(shape) == 1 else np.repeat(first[:, None], shape[1], axis=1)

    def jacobian_pattern(self, shape: Shape) -> np.ndarray:
        """Entry ``(i, d)`` reads entry ``(j, e)`` only for tokens before it in the order, or itself."""
        n, d = self.tokens(shape)
        degrees = np.repeat(self.degrees(n).numpy(), d)
        return (degrees[None, :] < degrees[:, None]) | np.eye(n * d, dtype=bool)

    def build(self, shape: Shape, context: ContextShape = None) -> "TarFlowLayer":
        transformer = self.conditioner().build(self.tokens(shape), self.transform.params_per_entry,
                                               context_channels(context), self.degrees(self.tokens(shape)[0]))
        nn.init.zeros_(transformer.out.weight)  # zero parameters: the transform's identity (TarFlow's proj_out)
        nn.init.zeros_(transformer.out.bias)
        return TarFlowLayer(transformer, self.transform.build(), self.sampling, self.tolerance, self.iterations,
                            self.block)


def _flops(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _bytes(value: float) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


class TarFlowLayer(AutoregressiveLayer):
    """``forward`` in one transformer pass; ``inverse`` by the ``sampling`` decoder."""

    def __init__(self, conditioner, transform, sampling: str = "cached", tolerance: float = 1e-6,
                 iterations: int | None = None, block: int | None = None):
        super().__init__(conditioner, transform)
        self.sampling, self.tolerance, self.iterations, self.block = sampling, tolerance, iterations, block
        #: transformer passes (or cached token steps) the last inverse used
        self.last_iterations = 0

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.decode_with(self.sampling, y, context)

    def generate_guided(self, y: Tensor, eps: Tensor | None, temperature: float, context: Tensor | None,
                        null_context: Tensor, weight: float) -> Tensor:
        return self.decode_with(self.sampling, y, context, null_context, weight)[0]

    def decode_with(self, sampling: str, y: Tensor, context: Tensor | None = None,
                    null_context: Tensor | None = None, weight: float = 0.0) -> tuple[Tensor, Tensor]:
        """The inverse by ``sampling`` (``cached``, ``recompute`` or ``jacobi``), guided by ``weight``
        when ``null_context`` is given."""
        guide = _Guide(context, null_context, weight)
        if sampling == "cached":
            return self._cached(y, guide)
        if sampling == "jacobi":
            return self._jacobi(y, guide)
        return self._recompute(y, guide)

    def _params(self, x: Tensor, guide: "_Guide") -> Tensor:
        return guide.mix(self.conditioner(guide.twice(x), guide.context))

    def _recompute(self, y: Tensor, guide: "_Guide") -> tuple[Tensor, Tensor]:
        degrees = self._degrees(y)
        x = torch.zeros_like(y)
        logdet = None
        for rank in range(1, y.shape[1] + 1):
            candidate, logdet = self.transform.inverse(y, self._params(x, guide))
            x = torch.where(degrees == rank, candidate, x)
        self.last_iterations = y.shape[1]
        return x, self._sum(logdet, y)

    def _degrees(self, y: Tensor) -> Tensor:
        degrees = self.conditioner.degrees
        return degrees.view(*degrees.shape, *(1,) * (y.dim() - 2))

    def _cached(self, y: Tensor, guide: "_Guide") -> tuple[Tensor, Tensor]:
        order = self.conditioner.order
        ranked = y[:, order]
        x_ranked = torch.empty_like(ranked)
        params = y.new_zeros(y.shape[0], self.conditioner.outputs, 1, *ranked.shape[2:])  # the first token's
        cache = self.conditioner.start(guide.batch(y.shape[0]), y)
        logdet = y.new_zeros(y.shape[0])
        for k in range(ranked.shape[1]):
            token, token_logdet = self.transform.inverse(ranked[:, k:k + 1], params)
            x_ranked[:, k:k + 1] = token
            if token_logdet is not None:
                logdet = logdet + token_logdet.flatten(1).sum(1)
            if k + 1 < ranked.shape[1]:
                params = guide.mix(self.conditioner.step(guide.twice(token), cache, guide.context))
        self.last_iterations = ranked.shape[1]
        return x_ranked[:, torch.argsort(order)], logdet

    def _jacobi(self, y: Tensor, guide: "_Guide") -> tuple[Tensor, Tensor]:
        degrees = self._degrees(y)
        tokens = y.shape[1]
        block = self.block or tokens
        x = torch.zeros_like(y)
        logdet, passes = None, 0
        for first in range(0, tokens, block):
            inside = (degrees > first) & (degrees <= first + block)
            size = min(block, tokens - first)
            for _ in range(self.iterations or size):
                candidate, logdet = self.transform.inverse(y, self._params(x, guide))
                moved = torch.where(inside, candidate, x)
                change = (moved - x).detach().abs().max()
                x = moved
                passes += 1
                if float(change) <= self.tolerance:
                    break
        self.last_iterations = passes
        return x, self._sum(logdet, y)


class _Guide:
    """Classifier-free guidance of one decode: a batch doubled into conditional and null halves,
    their parameters mixed ``theta_c + w (theta_c - theta_0)``; without a null context, the plain
    decode."""

    def __init__(self, context: Tensor | None, null_context: Tensor | None, weight: float):
        self.on = null_context is not None
        self.weight = weight
        self.context = torch.cat([context, null_context]) if self.on else context

    def batch(self, n: int) -> int:
        return 2 * n if self.on else n

    def twice(self, x: Tensor) -> Tensor:
        return torch.cat([x, x]) if self.on else x

    def mix(self, params: Tensor) -> Tensor:
        if not self.on:
            return params
        conditional, null = params.chunk(2)
        return conditional + self.weight * (conditional - null)
