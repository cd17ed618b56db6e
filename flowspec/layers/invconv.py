"""Invertible 1x1 convolution (Glow, Kingma & Dhariwal 2018, arXiv:1807.03039, sec. 3.2).

forward:  ``y[:, :, h, w] = W x[:, :, h, w]`` (a linear map of features for vectors)
inverse:  ``x = W^{-1} y``
log-det:  ``H * W * log|det W|``

Plain: ``W`` starts as a random rotation and ``log|det W|`` costs an O(c^3) ``slogdet``.
LU: ``W = P L (U + diag(sign_s * exp(log_s)))`` with ``P`` a fixed permutation, ``L`` unit lower
and ``U`` strictly upper triangular; ``log|det W| = sum(log_s)``, O(c).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from flowspec.errors import RuleViolation
from flowspec.layers.base import ContextShape, FlowLayer, LayerConfig, LayerCost, MatmulOp, Shape, numel, per_example, register


def multiply_channels(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``W x (+ b)`` over the channels of every pixel of ``x`` (``(B, c, H, W)``, or ``(B, c)``):
    one ``bmm`` (``baddbmm`` with a bias) of the broadcast ``W`` and ``x`` seen as ``(B, c, H W)``."""
    if x.dim() != 4:
        return torch.nn.functional.linear(x, weight, bias)
    batch, channels, height, width = x.shape
    flat = x.reshape(batch, channels, height * width)
    expanded = weight.expand(batch, *weight.shape)
    if bias is None:
        out = torch.bmm(expanded, flat)
    else:
        out = torch.baddbmm(bias.view(1, -1, 1).expand(batch, -1, height * width), expanded, flat)
    return out.view(batch, weight.shape[0], height, width)


def random_rotation(channels: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    return q


@register
class InvConvConfig(LayerConfig):
    kind: Literal["invconv"] = "invconv"
    lu: bool = True
    seed: int = 0

    def output_shape(self, shape: Shape) -> Shape:
        if shape[0] < 2:
            raise RuleViolation("invconv on 1 channel is only a scalar gain",
                                hint="squeeze first, or use actnorm for a per-channel scale")
        # W starts as a rotation (the Q of a QR): orthogonal, condition number 1, so nothing about
        # its invertibility depends on the seed and the rule allocates nothing.
        return shape

    def matmul_ops(self, shape: Shape, context: ContextShape = None) -> list[MatmulOp]:
        return [MatmulOp(shape[0], shape[0], 1, tuple(shape[1:]))]

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, None]:
        """``y = W x`` per pixel: every output channel of a pixel mixes all its input channels."""
        return np.broadcast_to(marks.any(axis=0, keepdims=True), shape), None

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        """Per example: the 1x1 conv, ``2 c^2 HW``. Per call (uncached, as in training): LU builds
        ``W = (P L) U`` with two c x c matmuls (``4 c^3``) and its log-det is ``sum(log_s)`` (``c``);
        plain uses ``W`` as is and its log-det is an LU factorisation in ``slogdet`` (``2 c^3 / 3``).
        The inverse also inverts ``W`` (``2 c^3``). Params: LU stores full ``lower`` and ``upper``
        matrices (``2 c^2 + c``), plain ``c^2``."""
        c, spatial = shape[0], numel(shape[1:])
        matmul = 2.0 * c * c * spatial
        if self.lu:
            params, logdet = 2 * c * c + c, float(c)
            build_matmul = 4.0 * c ** 3  # permutation @ lower @ upper
            build = build_matmul + 3.0 * c * c  # masks, unit diagonal, diag(sign * exp(log_s))
        else:
            params, logdet = c * c, 2.0 * c ** 3 / 3
            build_matmul = build = 0.0
        return LayerCost(params=params, flops_forward=matmul, flops_inverse=matmul,
                         matmul_flops_forward=matmul, matmul_flops_inverse=matmul,
                         flops_logdet=logdet, logdet_per_call=True, activations=numel(shape),
                         call_flops_forward=build, call_flops_inverse=build + 2.0 * c ** 3,
                         call_matmul_flops_forward=build_matmul,
                         call_matmul_flops_inverse=build_matmul,
                         ops=15 if self.lu else 5,  # LU: 10 to build W; conv, log-det (3), add
                         logdet_hint="" if self.lu else "lu: true makes it O(c)")

    def build(self, shape: Shape, context: ContextShape = None) -> "InvConv":
        return InvConvLU(shape, self.seed) if self.lu else InvConv(shape, self.seed)


class InvConv(FlowLayer):
    """Caching: outside training, when no gradient is being recorded, ``W``, ``W^{-1}`` and
    ``log|det W|`` are computed once and reused until a parameter changes or ``train()`` / ``to()``
    is called. The cache keeps a copy of the (c x c) parameters and is used only while they are
    equal to the current ones, so any update (optimizer step, ``load_state_dict``, EMA swap, even
    through ``.data``) invalidates it; the O(c^2) comparison is cheap next to the conv."""

    _cache: tuple | None = None

    def __init__(self, shape: Shape, seed: int = 0):
        super().__init__()
        self.spatial = numel(shape[1:])
        self.weight = nn.Parameter(random_rotation(shape[0], seed).float())

    def matrix(self) -> Tensor:
        return self.weight

    def log_abs_det(self) -> Tensor:
        return torch.linalg.slogdet(self.weight)[1]

    def _multiply(self, x: Tensor, weight: Tensor) -> Tensor:
        """``W x`` per pixel. Images go through a batched matrix product, ``W`` (a broadcast view)
        times each example's ``c x (H W)`` matrix, not a 1x1 ``conv2d``: oneDNN's 1x1 kernels at
        Glow's few channels (12-48) took 2-3x as long, forward and backward (glow-bench, one
        thread). ``bmm`` reads and writes NCHW in place, where ``einsum`` copied the input to
        ``(c, B H W)`` and the gradient back (0.65x-0.7x its time forward and backward)."""
        return multiply_channels(x, weight)

    def _cache_valid(self) -> bool:
        if self._cache is None:
            return False
        current = (*self.parameters(), *self.buffers())
        return len(current) == len(self._cache[0]) and all(
            a.dtype == b.dtype and a.device == b.device and a.shape == b.shape and torch.equal(a, b)
            for a, b in zip(current, self._cache[0]))

    def _weights(self) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(W, W^{-1} or None, log|det W|)``, from the cache when it may be used. ``W`` and its
        inverse are formed in the parameters' precision even under autocast: a bfloat16 ``P L U``
        would no longer be the matrix whose log-det is reported, and CUDA has no bfloat16 inverse.
        A valid cache is returned before the autocast guard is entered (nothing is computed; 1.02x
        glow-bench's sampling)."""
        cacheable = self._cacheable()
        if cacheable and self._cache_valid():
            return self._cache[1:]
        with torch.autocast(self._device_type(), enabled=False):
            if not cacheable:
                return self.matrix(), None, self.log_abs_det()
            with torch.no_grad():
                weight = self.matrix()
                snapshot = tuple(t.detach().clone() for t in (*self.parameters(), *self.buffers()))
                self._cache = (snapshot, weight, torch.linalg.inv(weight), self.log_abs_det())
            return self._cache[1:]

    def _device_type(self) -> str:
        return next(self.parameters()).device.type

    def _cacheable(self) -> bool:
        """Not training, no gradient being recorded for the parameters, not being compiled or
        exported."""
        if self.training or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        weight, _, log_abs_det = self._weights()
        return self._multiply(x, weight), per_example(self.spatial * log_abs_det, x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, log_abs_det = self._invert(y)
        return x, per_example(-self.spatial * log_abs_det, y)

    def _invert(self, y: Tensor) -> tuple[Tensor, Tensor]:
        weight, inverse, log_abs_det = self._weights()
        if inverse is None:
            with torch.autocast(self._device_type(), enabled=False):
                inverse = torch.linalg.inv(weight)
        return self._multiply(y, inverse), log_abs_det

    def generate(self, y: Tensor, eps: Tensor | None, temperature: float,
                 context: Tensor | None = None) -> Tensor:
        """Sampling: the inverse without its per-example log-det, which nothing reads."""
        return self._invert(y)[0]


class InvConvLU(InvConv):
    def __init__(self, shape: Shape, seed: int = 0):
        FlowLayer.__init__(self)
        c = shape[0]
        self.spatial = numel(shape[1:])
        p, lower, upper = torch.linalg.lu(random_rotation(c, seed))
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign_s", torch.sign(diagonal).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diagonal.abs()).float())

    def matrix(self) -> Tensor:
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def log_abs_det(self) -> Tensor:
        return self.log_s.sum()
