"""The layer interface: one config model per kind, carrying its shape rule, cost rule and module.

A layer kind is a pydantic model with ``kind: Literal["name"]`` registered with
:func:`register`. It knows, as pure functions of shapes (no weights allocated):

* ``output_shape(shape)`` -- the shape it produces, raising :class:`RuleViolation` when a
  dimension or invertibility rule is broken;
* ``cost(shape)`` -- parameters, FLOPs of forward / inverse / log-det and stored activations;

and ``build(shape, context)`` returns its :class:`FlowLayer` module. Shapes exclude the batch
dimension (an image ``(C, H, W)``, a vector ``(D,)`` or a token sequence ``(N, D)``: ``N`` tokens
of ``D`` channels); ``context`` is the shape of the condition every layer may see (``(E,)`` for a vector
broadcast over pixels, ``(E, H, W)`` for a feature map), or ``None``.

Kinds are discovered: every module of this package (and of ``transforms/`` and ``conditioners/``)
is imported by the package, so a new kind is one new file.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

# family-neutral (every family's cost rules use them); importable from here for the kinds
from flowspec.core.costs import LayerCost, MatmulOp, Shape, numel  # noqa: F401
from flowspec.errors import RuleViolation
from flowspec.layers.kinds import Registry

ContextShape = tuple[int, ...] | None

LAYER_KINDS = Registry("layer")


def register(config: type["LayerConfig"]) -> type["LayerConfig"]:
    """Make a layer kind known to the spec language, the graph, the report and the tests (at any
    time: specs loaded afterwards accept it)."""
    return LAYER_KINDS.register(config)


class LayerConfig(BaseModel):
    """Base of every layer kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    kind: str
    name: str | None = None

    #: True for layers that factor out part of their input to a prior (``split``).
    factors_out: ClassVar[bool] = False
    #: The shapes this kind accepts: "image" (C, H, W), "vector" (D,), "sequence" (N tokens, D
    #: channels each: what ``patchify`` makes of an image) or "any".
    accepts: ClassVar[str] = "any"
    #: The factor this kind divides an image's height and width by (squeeze: 2).
    spatial_factor: ClassVar[int] = 1
    #: True for kinds whose module reads the condition's features when given them (a coupling's
    #: conditioner, a MADE, a split's conditional prior): the graph draws a context edge to them.
    reads_context: ClassVar[bool] = False
    #: Fields whose value differs between the copies of a repeated row by design (a seeded draw per
    #: copy, like a shuffled mask's ``seed``): the ``paper`` diagram folds copies that differ only there.
    per_copy_fields: ClassVar[tuple[str, ...]] = ()

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def check_input(self, shape: Shape) -> None:
        """Reject input shapes this kind does not accept (called before ``output_shape``)."""
        if self.accepts == "image" and len(shape) != 3:
            raise RuleViolation(f"{self.kind} needs an image input (C, H, W), got {shape}")
        if self.accepts == "vector" and len(shape) != 1:
            raise RuleViolation(f"{self.kind} needs a vector input (D,), got {shape}")
        if self.accepts == "sequence" and len(shape) != 2:
            raise RuleViolation(f"{self.kind} needs a token sequence (N, D), got {shape}",
                                hint="patchify an image first (- {kind: patchify, patch: p})")

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        return LayerCost()

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list["MatmulOp"]:
        """The conv / linear calls one forward call runs per example (the report times them at
        these shapes); none for elementwise kinds."""
        return []

    def report_notes(self, shape: Shape, context: ContextShape = None) -> list[str]:
        """Lines ``flowspec report`` adds under its table for this layer (a transformer's attention
        FLOPs, KV-cache bytes and decoding costs); none by default."""
        return []

    def random_field(self) -> tuple | None:
        """The field that makes a training-mode forward random (dropout), or ``None``. Invertible
        backprop re-runs layers in backward, so it needs them deterministic."""
        return None

    @property
    def prior_sees_kept(self) -> bool:
        """For a kind that factors out a latent: whether that latent's prior is a function of the
        entries it keeps (a conditional prior) rather than of none."""
        return False

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Where this layer moves its input's entries, as a pure rule on a boolean array ``marks``
        of ``shape``: ``(marks of the output, marks of the latent it factors out or None)``, an
        output entry marked when it is a function of a marked input entry through a permutation
        or a linear mix (``invconv`` marks every channel of a pixel with a marked channel). The
        nonlinear dependencies of :meth:`dependent_entries` are left out. Default: a layer that
        keeps its shape keeps every entry in place (elementwise kinds, couplings); ``None`` for a
        kind that changes its shape without saying how (the graph's mixing check then stops)."""
        return (marks, None) if tuple(self.output_shape(shape)) == tuple(shape) else None

    def dependent_entries(self, shape: Shape) -> np.ndarray | None:
        """The entries of an input of ``shape`` that this layer transforms as a function of other
        entries (a coupling's transformed half, an autoregressive layer's every entry but the first
        in its order), as a boolean array; ``None`` for a layer that makes no entry depend on
        another nonlinearly (elementwise and linear kinds)."""
        return None

    def jacobian_pattern(self, shape: Shape) -> np.ndarray | None:
        """For an autoregressive kind: the ``(numel, numel)`` boolean pattern its Jacobian
        ``dy/dx`` may be nonzero on (output entry by input entry, flattened): the order's triangle and
        the diagonal. ``flowspec check`` measures the largest entry outside it. None: no claim."""
        return None

    def copy_at(self, index: int) -> "LayerConfig":
        """The config of the ``index``-th copy (0, 1, ...) of this row, in the order the spec's
        repeat blocks and compact-form steps expand it; a kind with a field that alternates
        (``parity: alternate``) resolves it here, every other kind is the same at every copy."""
        return self

    def narrow(self, width: int) -> "LayerConfig":
        """A copy whose networks are at most ``width`` wide (``flowspec check``'s narrow model)."""
        return self

    def build(self, shape: Shape, context: ContextShape = None) -> "FlowLayer":
        raise NotImplementedError


class Factored(NamedTuple):
    """A latent a node factors out, with its log-density under the node's prior."""

    latent: Tensor
    log_prob: Tensor


class FlowLayer(nn.Module):
    """An invertible map. ``forward(x, context=None) -> (y, logdet)``, ``inverse(y, context=None)
    -> (x, logdet_inverse)``.

    Forward is data -> latent; ``logdet = log|det dy/dx|`` has shape ``(batch,)`` and the
    inverse returns ``-logdet`` of the forward at the same point. Laws: ``inverse(forward(x)[0])[0]
    == x``. ``context`` is the condition (or ``None``); kinds that do not use it ignore it.

    The model walks layers as graph nodes through :meth:`encode` / :meth:`decode` /
    :meth:`generate`; a node that factors out a latent (``factors_out``) overrides them, every
    other node is its forward / inverse.
    """

    #: True for nodes with two outputs: the kept part and a latent with its own prior (split).
    factors_out: ClassVar[bool] = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def encode(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Factored | None]:
        """Data -> latent as a node: ``(y, logdet, factored latent or None)``."""
        y, logdet = self(x, context)
        return y, logdet, None

    def decode(self, y: Tensor, latent: Tensor | None, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent -> data as a node, given the latent it factored out (if it does)."""
        return self.inverse(y, context)

    def generate(self, y: Tensor, eps: Tensor | None, temperature: float,
                 context: Tensor | None = None) -> Tensor:
        """Sampling direction: like :meth:`decode`, drawing a factored latent from its prior with
        standard normal noise ``eps`` at ``temperature``."""
        return self.inverse(y, context)[0]

    def generate_guided(self, y: Tensor, eps: Tensor | None, temperature: float, context: Tensor | None,
                        null_context: Tensor, weight: float) -> Tensor:
        """:meth:`generate` with classifier-free guidance of weight ``w``: a node whose conditioner
        mixes ``theta_c + w (theta_c - theta_0)`` from the condition's features ``context`` and the null
        condition's ``null_context`` overrides this (``tarflow``, ``coupling``); every other node sees
        the condition."""
        return self.generate(y, eps, temperature, context)

    def recompute(self, y: Tensor, context: Tensor | None = None):
        """Invertible backprop's step: recompute the input from the output ``y`` and re-run the
        layer with autograd on. Returns ``(inputs, out, logdet, join)``: leaf tensors that
        ``join`` assembles into the input ``x = f^{-1}(y)``, and ``(out, logdet) = f(x)`` recorded.
        The default inverts, then runs forward; a kind may share work between the two."""
        with torch.no_grad():
            x, _ = self.inverse(y, context)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            out, logdet = self(x, context)
        return (x,), out, logdet, _identity


def _identity(x: Tensor) -> Tensor:
    return x


class DataInitialized(nn.Module):
    """A module that initializes itself from its first training batch (actnorm, Kingma & Dhariwal
    2018). ``initialized`` is a buffer, saved with the weights; :attr:`pending` mirrors it in Python
    (set here and on every ``load_state_dict``), so the check in ``forward`` reads no tensor: no
    device sync per layer on a GPU, no graph break under ``torch.compile``."""

    pending: bool = False

    def register_initialized(self, initialized: bool) -> None:
        self.register_buffer("initialized", torch.tensor(initialized))
        self.pending = not initialized

    def mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self.pending = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.pending = not bool(self.initialized)



def channel_view(shape: Shape) -> Shape:
    """Broadcast shape of a per-channel parameter: (1, C, 1, 1) for images, (1, D) for vectors."""
    return (1, shape[0]) + (1,) * (len(shape) - 1)


def per_example(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scalar log-det to shape ``(batch,)``."""
    return value.expand(x.shape[0])


def zeros_like_batch(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
