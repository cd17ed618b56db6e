"""Coupling layers: a mask x a conditioner x an elementwise transform (NICE, arXiv:1410.8516;
RealNVP, arXiv:1605.08803; Glow, arXiv:1807.03039; Flow++, arXiv:1902.00275).

With ``x`` split by a mask into a transformed part ``x_a`` and a conditioning part ``x_b``, and
``theta = NN(x_b, context)`` the transform's parameters (``P`` per transformed entry):

forward:  ``y_a = tau(x_a; theta)``,  ``y_b = x_b``
inverse:  ``x_a = tau^{-1}(y_a; theta)``,  ``x_b = y_b``  (``NN`` sees ``y_b = x_b``: same ``theta``)
log-det:  ``sum log|tau'(x_a; theta)|`` over the transformed entries

Masks: ``channel`` splits the channels (features) in halves and ``parity`` 0 transforms the first;
``checkerboard`` alternates pixels and ``parity`` 0 transforms the pixels where ``h + w`` is even;
``columns`` alternates columns and ``parity`` 0 transforms the even ones (``w`` even: Flow++'s
``CheckerboardSplit``, which reshapes to ``[B, H, W/2, 2, C]``); ``rows`` alternates rows the same
way. ``shuffled`` is Jet's channel split (Kolesnikov et al. 2024, arXiv:2412.15129): a fixed random
permutation ``pi`` of the channels (``torch.randperm`` from ``seed``; the k-th copy of a repeated row
uses ``seed + k``), then halves: ``x' = x[pi]``, the coupling acts on ``x'`` as ``channel`` does, and
``y = y'[pi^{-1}]`` (a permutation: no log-det). Jet's spatial splits are ``checkerboard``,
``columns`` (its ``vstripes``) and ``rows`` (``hstripes``) on the patch grid a squeeze makes, and
its ``-inv`` variants are the other ``parity``. ``parity: alternate`` in a repeated
row gives its copies 0, 1, 0, ... in the order the spec expands them (:meth:`CouplingConfig.copy_at`).
The transform (``additive``, ``affine``, ...) and the conditioner (``conv``, ``mlp``, ...) are
registered kinds (:mod:`flowspec.layers.transforms`, :mod:`flowspec.layers.conditioners`).
``scale``, ``clamp`` and ``order`` on the row are short for the affine transform's own fields.
``layout`` maps the conditioner's ``P·C_a`` output channels to the ``P`` parameters of each of the
``C_a`` transformed channels: ``blocks`` reads parameter ``p`` of channel ``c`` at ``p·C_a + c``,
``interleaved`` at ``c·P + p`` (Glow's ``shift = h[..., 0::2]``, ``scale = h[..., 1::2]``, so its
weights transplant unchanged).
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from flowspec.errors import RuleViolation
from flowspec.layers.base import (ContextShape, FlowLayer, LayerConfig, LayerCost, MatmulOp, Shape, numel,
                                  register)
from flowspec.layers.conditioners import Conditioner, ConvConditioner, context_channels
from flowspec.layers.transforms import AffineTransform, Transform
from flowspec.layers.transforms.affine import check_clamp

MASKS = ("channel", "shuffled", "checkerboard", "columns", "rows")
SPATIAL_MASKS = ("checkerboard", "columns", "rows")  # masks over pixels: every channel of a pixel goes together
CHANNEL_MASKS = ("channel", "shuffled")


@register
class CouplingConfig(LayerConfig):
    reads_context = True  # its conditioner appends the condition's features to its input
    per_copy_fields = ("seed",)  # a shuffled mask's copies each draw their own permutation

    kind: Literal["coupling"] = "coupling"
    transform: Transform = Field(default_factory=AffineTransform,
                                 description="elementwise transform: a kind name or {kind: ..., options}")
    mask: Literal["channel", "shuffled", "checkerboard", "columns", "rows"] = Field(
        "channel", description="channel: halves of the channels; shuffled: halves of the channels after a fixed "
                               "random permutation drawn from seed (Jet); checkerboard: pixels with h + w even / "
                               "odd; columns: even / odd columns (Flow++'s checkerboard split, Jet's vstripes); "
                               "rows: even / odd rows (Jet's hstripes)")
    seed: Annotated[int, Field(ge=0, le=2 ** 31 - 1)] = Field(
        0, description="mask: shuffled: the seed of the channel permutation; the k-th copy of a repeated row "
                       "draws with seed + k")
    parity: Literal[0, 1, "alternate"] = Field(
        0, description="which half is transformed (0: the first half of the channels, the pixels with h + w "
                       "even, or the even columns); alternate: 0, 1, 0, ... over the row's copies in a repeat "
                       "block or compact-form step")
    scale: Optional[Literal["sigmoid", "sigmoid2", "exp", "tanh"]] = Field(None, description="short for transform: {kind: affine, scale}")
    order: Optional[Literal["scale_shift", "shift_scale"]] = Field(
        None, description="short for transform: {kind: affine, order}")
    layout: Literal["blocks", "interleaved"] = Field(
        "blocks", description="where the conditioner puts parameter p of transformed entry c among its P·C_a "
                              "output channels: blocks, channel p·C_a + c; interleaved, channel c·P + p (Glow's "
                              "h[..., 0::2] shift, h[..., 1::2] scale)")
    clamp: Optional[float] = Field(None, description="short for transform: {kind: affine, clamp}",
                                   json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 50})
    conditioner: Conditioner = Field(default_factory=ConvConditioner)

    @field_validator("clamp")
    @classmethod
    def _scale_bounded_away_from_zero(cls, clamp: float | None) -> float | None:
        return None if clamp is None else check_clamp(clamp)

    @model_validator(mode="after")
    def _affine_options(self):
        """Fold the row's ``scale`` / ``clamp`` into the affine transform they belong to."""
        options = {k: v for k, v in (("scale", self.scale), ("clamp", self.clamp), ("order", self.order))
                   if v is not None}
        if options:
            if not set(options) <= set(type(self.transform).model_fields):  # affine's options
                verb = "apply" if len(options) > 1 else "applies"
                raise ValueError(f"{' and '.join(options)} {verb} to transform: affine, not {self.transform.kind}")
            object.__setattr__(self, "transform", self.transform.model_copy(update=options))
            for name in options:
                object.__setattr__(self, name, None)
        return self

    @model_validator(mode="after")
    def _seed_belongs_to_the_shuffled_mask(self):
        if self.seed and self.mask != "shuffled":
            raise ValueError(f"seed draws the channel permutation of mask: shuffled; this row has mask: {self.mask}")
        return self

    def copy_at(self, index: int) -> "CouplingConfig":
        """The ``index``-th copy of this row: ``parity: alternate`` becomes ``index % 2``, and a
        shuffled mask's ``seed`` becomes ``seed + index`` (each copy its own permutation)."""
        update = {}
        if self.parity == "alternate":
            update["parity"] = index % 2
        if self.mask == "shuffled" and index:
            update["seed"] = self.seed + index
        return self.model_copy(update=update) if update else self

    def permutation(self, channels: int) -> Tensor:
        """``pi`` of a shuffled mask: ``x' = x[:, pi]`` (drawn from ``seed``, the same on every machine)."""
        return torch.randperm(channels, generator=torch.Generator().manual_seed(self.seed))

    def _halves(self, shape: Shape) -> tuple[int, int]:
        """(transformed, conditioning) channel counts of a channel mask."""
        first = shape[0] // 2
        second = shape[0] - first
        return (second, first) if self.parity == 1 else (first, second)

    def output_shape(self, shape: Shape) -> Shape:
        image = len(shape) == 3
        if self.mask in SPATIAL_MASKS and not image:
            raise RuleViolation(f"a {self.mask} mask needs an image input (C, H, W), got a vector "
                                f"{shape}", hint="use mask: channel", field=("mask",))
        if self.mask == "checkerboard" and shape[1] * shape[2] < 2:
            raise RuleViolation("a checkerboard mask needs at least 2 pixels",
                                hint="use mask: channel", field=("mask",))
        if self.mask == "columns" and shape[2] < 2:
            raise RuleViolation(f"a columns mask needs at least 2 columns, got width {shape[2]}",
                                hint="use mask: checkerboard or channel", field=("mask",))
        if self.mask == "rows" and shape[1] < 2:
            raise RuleViolation(f"a rows mask needs at least 2 rows, got height {shape[1]}",
                                hint="use mask: columns or channel", field=("mask",))
        if self.mask in CHANNEL_MASKS and shape[0] < 2:
            what = "channels" if image else "features"
            raise RuleViolation(f"a channel mask needs at least 2 {what} to divide, got {shape[0]}",
                                hint="squeeze first or use mask: checkerboard" if image else None,
                                field=("mask",))
        self.conditioner.check_shape(shape)
        return shape

    def dependent_entries(self, shape: Shape) -> np.ndarray:
        """The transformed half: a channel half, or every channel of the mask's free pixels."""
        config = self.copy_at(0)
        if config.mask in SPATIAL_MASKS:
            free = SPATIAL_MASK_BUILDERS[config.mask](shape[1], shape[2], config.parity)[0].numpy() == 0
            return np.broadcast_to(free, shape)
        transformed = config._halves(shape)[0]
        marks = np.zeros(shape, dtype=bool)
        marks[(slice(None, transformed) if config.parity == 0 else slice(shape[0] - transformed, None))] = True
        if config.mask == "shuffled":  # channel j of the permuted input is channel pi[j] of the input
            shuffled = np.zeros_like(marks)
            shuffled[config.permutation(shape[0]).numpy()] = marks
            return shuffled
        return marks

    def _net_channels(self, shape: Shape) -> tuple[int, int, int]:
        """(conditioner input, conditioner output, transformed) channels."""
        per_entry = self.transform.params_per_entry
        if self.mask in SPATIAL_MASKS:
            return shape[0], per_entry * shape[0], shape[0]
        transformed, conditioning = self._halves(shape)
        return conditioning, per_entry * transformed, transformed

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        n_in, n_out, _ = self._net_channels(shape)
        net = self.conditioner.cost(n_in, n_out, numel(shape[1:]), context_channels(context))
        entry = self.transform.cost()
        n = numel(shape)
        # with a context, the conditioner's input is a new tensor: the kept part and the features
        # broadcast over the pixels, which its first conv / linear keeps for backward
        joined = (n_in + context_channels(context)) * numel(shape[1:]) if context else 0
        return LayerCost(params=net.params + entry.params, flops_forward=net.matmul_flops + net.elementwise + entry.flops_forward * n,
                         flops_inverse=net.matmul_flops + net.elementwise + entry.flops_inverse * n,
                         matmul_flops_forward=net.matmul_flops, matmul_flops_inverse=net.matmul_flops,
                         flops_logdet=entry.flops_logdet * n,
                         activations=int(n + net.outputs + entry.saved * n + joined),  # input, net outputs, transform
                         call_activations=net.call_outputs,
                         # net: a conv / linear per layer and a ReLU between; masking, transform,
                         # join and log-det sum around it
                         ops=2 * net.layers - 1 + net.extra_ops + entry.ops
                         + (14 if self.mask in SPATIAL_MASKS else 11) + (2 if self.mask == "shuffled" else 0))

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        n_in, n_out, _ = self._net_channels(shape)
        return self.conditioner.matmul_ops(n_in, n_out, tuple(shape[1:]), context_channels(context))

    def random_field(self) -> tuple | None:
        inner = self.conditioner.random_field()
        return None if inner is None else ("conditioner", *inner)

    def narrow(self, width: int) -> "CouplingConfig":
        return self.model_copy(update={"conditioner": self.conditioner.narrow(width)})

    def build(self, shape: Shape, context: ContextShape = None) -> "Coupling":
        if self.parity == "alternate":  # a row built on its own is its first copy
            return self.copy_at(0).build(shape, context)
        n_in, n_out, _ = self._net_channels(shape)
        return Coupling(self, shape, self.conditioner.build_at(n_in, n_out, tuple(shape[1:]),
                                                            context_channels(context)))


def checkerboard(height: int, width: int, parity: int) -> Tensor:
    """1 where an entry conditions, 0 where it is transformed (``parity`` 0: ``h + w`` even is
    transformed)."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    return ((rows + cols + parity) % 2).float().view(1, 1, height, width)


def columns(height: int, width: int, parity: int) -> Tensor:
    """1 where an entry conditions, 0 where it is transformed (``parity`` 0: even columns are
    transformed), as Flow++'s ``CheckerboardSplit`` pairs ``x[..., 0::2]`` and ``x[..., 1::2]``."""
    cols = torch.arange(width).view(1, -1).expand(height, width)
    return ((cols + parity) % 2).float().view(1, 1, height, width)


def rows(height: int, width: int, parity: int) -> Tensor:
    """1 where an entry conditions, 0 where it is transformed (``parity`` 0: even rows are
    transformed), Jet's ``hstripes``."""
    return columns(width, height, parity).transpose(2, 3).contiguous()


SPATIAL_MASK_BUILDERS = {"checkerboard": checkerboard, "columns": columns, "rows": rows}


class Coupling(FlowLayer):
    def __init__(self, config: CouplingConfig, shape: Shape, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.transform = config.transform.build()
        self.per_entry = config.transform.params_per_entry
        self.interleaved = config.layout == "interleaved"
        self.parity = config.parity
        self.transformed = config._net_channels(shape)[2]
        self.checkerboard = config.mask in SPATIAL_MASKS  # a mask over pixels (checkerboard or columns)
        if self.checkerboard:
            self.register_buffer("mask", SPATIAL_MASK_BUILDERS[config.mask](shape[1], shape[2], config.parity))
        self.shuffled = config.mask == "shuffled"
        if self.shuffled:
            order = config.permutation(shape[0])
            self.register_buffer("order", order)
            self.register_buffer("unorder", torch.argsort(order))

    def params(self, conditioning: Tensor, context: Tensor | None) -> Tensor:
        """The transform's parameters ``(B, P, C_a, ...)`` from the conditioning part."""
        h = self.net(conditioning, context)
        if self.interleaved:
            return h.view(h.shape[0], -1, self.per_entry, *h.shape[2:]).transpose(1, 2)
        return h.view(h.shape[0], self.per_entry, -1, *h.shape[2:])

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(transformed, conditioning) parts of a channel mask (of the permuted channels ``x[:, pi]``
        for a shuffled one)."""
        if self.shuffled:
            x = x.index_select(1, self.order)
        if self.parity == 0:
            return x[:, : self.transformed], x[:, self.transformed:]
        conditioning = x.shape[1] - self.transformed
        return x[:, conditioning:], x[:, :conditioning]

    def join(self, transformed: Tensor, conditioning: Tensor) -> Tensor:
        parts = (transformed, conditioning) if self.parity == 0 else (conditioning, transformed)
        joined = torch.cat(parts, dim=1)
        return joined.index_select(1, self.unorder) if self.shuffled else joined

    @staticmethod
    def _sum(logdet: Tensor | None, like: Tensor) -> Tensor:
        return like.new_zeros(like.shape[0]) if logdet is None else logdet.flatten(1).sum(1)

    def _run(self, x: Tensor, context: Tensor | None, inverse: bool,
             with_logdet: bool = True) -> tuple[Tensor, Tensor | None]:
        """``(y, log-det per example)``; the log-det is ``None`` when not ``with_logdet``."""
        tau = self.transform.inverse if inverse else self.transform.forward
        if self.checkerboard:
            free = self.mask == 0
            y, logdet = tau(x, self.params(x * self.mask, context))
            y = torch.where(free, y, x)
            if not with_logdet:
                return y, None
            return y, self._sum(None if logdet is None else torch.where(free, logdet, 0.0), x)
        x_a, x_b = self.split(x)
        y_a, logdet = tau(x_a, self.params(x_b, context))
        return self.join(y_a, x_b), self._sum(logdet, x) if with_logdet else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._run(x, context, inverse=False)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._run(y, context, inverse=True)

    def generate(self, y: Tensor, eps: Tensor | None, temperature: float,
                 context: Tensor | None = None) -> Tensor:
        """Sampling: the inverse without the log-det sum, which nothing reads."""
        return self._run(y, context, inverse=True, with_logdet=False)[0]

    def recompute(self, y: Tensor, context: Tensor | None = None):
        """A channel mask shares one conditioner pass between the inversion and the re-run
        (``x_b = y_b``, so ``NN(x_b)`` is the same evaluation); a checkerboard inverts, then runs."""
        if self.checkerboard:
            return super().recompute(y, context)
        y_a, y_b = self.split(y)
        with torch.enable_grad():
            x_b = y_b.detach().requires_grad_(True)
            params = self.params(x_b, context)
        with torch.no_grad():
            x_a, _ = self.transform.inverse(y_a, params)
        with torch.enable_grad():
            x_a = x_a.detach().requires_grad_(True)
            out_a, logdet = self.transform(x_a, params)
            out, logdet = self.join(out_a, x_b), self._sum(logdet, x_a)
        return (x_a, x_b), out, logdet, self.join
