"""The conditioner contract: a network from the kept part of a coupling's input (plus a context) to
the parameters of its elementwise transform. It need not be invertible.

A conditioner kind is a pydantic config with ``kind: Literal[...]`` registered with
:func:`register_conditioner`. It knows, as pure functions of channel counts:

* ``accepts``: "image" (C, H, W) or "vector" (D,) inputs;
* ``build(in, out, context)``: the module, called as ``net(x, context=None)``; a vector context
  ``(B, E)`` is broadcast over the pixels, a map ``(B, E, H, W)`` is taken as it is;
* ``cost(in, out, spatial, context)``: params, conv/matmul FLOPs and outputs per example;
* ``matmul_ops(in, out, spatial, context)``: the conv / linear calls the report times;
* ``narrow(width)``: the copy ``flowspec check`` builds.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn
from torch.nn import functional as F

from flowspec.errors import RuleViolation
from flowspec.layers.kinds import Registry

CONDITIONER_KINDS = Registry("conditioner")


def register_conditioner(config: type["ConditionerConfig"]) -> type["ConditionerConfig"]:
    """Make a conditioner kind known to couplings, the spec language, the report and the tests."""
    return CONDITIONER_KINDS.register(config)


class NetCost(NamedTuple):
    """Per example cost of a stack of convs / linears ``(in, out, kernel)`` over ``spatial`` pixels
    (1 for linears): ``params = sum(i o k^2 + o)``, ``matmul_flops = sum(2 i o k^2 spatial)``
    (a multiply-add is 2 FLOPs; the bias add is not counted, as torch's FlopCounterMode does not),
    ``outputs = sum(o spatial)`` the elements the layers output, the last one's included;
    ``elementwise`` FLOPs and ``ops`` besides the convs / linears and their activations."""

    params: int
    matmul_flops: float
    outputs: int
    layers: int
    elementwise: float = 0.0
    extra_ops: int = 0
    call_outputs: int = 0  # elements backward keeps once per call, not per example (computed weights)


def stack_cost(shapes: list[tuple[int, int, int]], spatial: int = 1) -> NetCost:
    """The :class:`NetCost` of convs / linears ``(in, out, kernel)``, each keeping ``spatial``."""
    return NetCost(params=sum(i * o * k * k + o for i, o, k in shapes),
                   matmul_flops=sum(2.0 * i * o * k * k * spatial for i, o, k in shapes),
                   outputs=sum(o * spatial for _, o, _ in shapes), layers=len(shapes))


def context_channels(context: tuple[int, ...] | None) -> int:
    """Feature count of a context shape ``(E,)`` or ``(E, H, W)``; 0 without one."""
    return context[0] if context else 0


def with_context(x: Tensor, context: Tensor | None) -> Tensor:
    """``x`` with the context appended along the channels: a vector context ``(B, E)`` is
    broadcast over ``x``'s pixels, a map ``(B, E, H, W)`` is used as it is."""
    if context is None:
        return x
    if x.dim() > 2 and context.dim() == 2:
        context = context.view(*context.shape, *(1,) * (x.dim() - 2)).expand(-1, -1, *x.shape[2:])
    return torch.cat([x, context.to(x.dtype)], dim=1)


class ChannelsLastNet(nn.Sequential):
    """A conv stack that computes in channels_last (NHWC) layout; its input and output stay NCHW.

    oneDNN's NHWC kernels run Glow's conditioner shapes (a few channels in, 128-512 hidden, 3x3
    and 1x1) 2-4x faster than its NCHW ones on CPU; the two layout copies are of the thin input
    and output only. Parameters are stored channels_last, so no weight is re-laid per call.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = with_context(x, context)
        return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution ``y[b, :, h, w] = W x[b, :, h, w] + bias``, then ``max(y, 0)`` with
    ``relu=True``; an ``nn.Conv2d`` with ``W`` of shape ``(out, in, 1, 1)`` in every other respect
    (parameters, init, state dict).

    On a channels_last input the pixels are the rows of a ``(B H W, in)`` matrix, so the map is one
    matrix product on the NHWC view, the bias added and the ReLU applied in place on the product
    (before it is viewed as NCHW again, channels_last, as a convolution would return it; in place on
    that view, autograd would replay the ReLU's backward as a strided scatter into a zero tensor).
    At Glow's conditioner shapes oneDNN's 1x1 kernels are slower than this product in eager mode.
    Any other input runs as the convolution, and so does every input under ``torch.compile`` /
    ``torch.export`` (inductor fuses the ReLU into oneDNN's convolution; with the product its
    training step ran at half the speed)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, relu: bool = False):
        super().__init__(in_channels, out_channels, 1, bias=bias)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            y = super().forward(x)
            return F.relu(y, inplace=True) if self.relu else y
        # the bias is added after the product: addmm's broadcast copy of it is slower
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.view(self.out_channels, self.in_channels))
        if self.bias is not None:
            y = y.add_(self.bias)
        if self.relu:
            y = y.relu_()
        return y.permute(0, 3, 1, 2)


class ContextNet(nn.Sequential):
    """A stack of layers whose input is ``x`` with the context appended (:func:`with_context`)."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return super().forward(with_context(x, context))


def zero_init(layer: nn.Module) -> nn.Module:
    """Zero a last layer's weight and bias, so a coupling starts at its transform's
    all-zero-parameter map (the identity for additive and ``exp``-scaled affine)."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ConditionerConfig(BaseModel):
    """Base of every conditioner kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite
    kind: str
    #: "image" (C, H, W) or "vector" (D,)
    accepts: ClassVar[str] = "image"

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Reject an input shape of the wrong family, naming the conditioner that fits."""
        image = len(shape) == 3
        if self.accepts == "image" and not image:
            raise RuleViolation(f"a {self.kind} conditioner needs an image input; this input is a vector "
                                f"{shape}", hint="use conditioner: {kind: mlp}", field=("conditioner", "kind"))
        if self.accepts == "vector" and image:
            raise RuleViolation(f"an {self.kind} conditioner works on vectors; this input is an image "
                                f"{shape}", hint="use conditioner: {kind: conv}", field=("conditioner", "kind"))

    def build(self, in_channels: int, out_channels: int, context: int = 0) -> nn.Module:
        raise NotImplementedError

    def build_at(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> nn.Module:
        """``build`` for inputs of ``spatial`` size ``(H, W)`` (``()`` for vectors); a kind whose
        weights depend on the size (a learned position embedding) overrides this."""
        return self.build(in_channels, out_channels, context)

    def cost(self, in_channels: int, out_channels: int, spatial: int, context: int = 0) -> NetCost:
        raise NotImplementedError

    def matmul_ops(self, in_channels: int, out_channels: int, spatial: tuple, context: int = 0) -> list:
        raise NotImplementedError

    def random_field(self) -> tuple | None:
        """The field that makes a training-mode pass random (dropout), or ``None``."""
        return None

    def narrow(self, width: int) -> "ConditionerConfig":
        return self
