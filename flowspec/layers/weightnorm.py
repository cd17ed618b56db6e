r"""Weight-normalised convolutions with data-dependent init (Salimans & Kingma 2016,
arXiv:1602.07868), as the IAF-VAE's code uses them everywhere (Kingma et al. 2016, arXiv:1606.04934).

``W = g * (M * v) / ||M * v||`` with the norm per output channel over (in, kh, kw) and an optional
fixed 0/1 mask ``M`` (autoregressive convolutions). Data-dependent init: on the first batch seen
while :func:`data_init` is active, with ``t = conv(x; (M v)/||M v||)`` (``g = 1``, no bias),
``g = s / std(t)`` and ``b = -mean(t) s / std(t)`` per output channel, so the output starts with
mean 0 and standard deviation ``s`` (``init_scale``) on that batch; a channel whose ``t`` is
constant on the batch (std under 1e-3: the top-down pass's first conv reads the learned top,
which starts at 0) gets ``g = s`` instead of a gain that would blow its gradients up.

This is a building block, not a kind: :mod:`flowspec.layers.masked_conv` and the hierarchical
VAE's networks use it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class DataInitConv2d(nn.Module):
    """A ``kernel x kernel`` conv (``transposed``: its transpose, which multiplies the resolution by
    ``stride``) with weight norm, an optional mask and data-dependent init; ``padding = kernel // 2``.

    Parameters ``v`` (the conv's weight shape), ``g`` and ``bias`` (``cout`` each)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, *, transposed: bool = False,
                 mask: Tensor | None = None, init_scale: float = 0.1):
        super().__init__()
        self.cin, self.cout, self.kernel, self.stride = cin, cout, kernel, stride
        self.transposed, self.init_scale = transposed, init_scale
        shape = (cin, cout, kernel, kernel) if transposed else (cout, cin, kernel, kernel)
        self.v = nn.Parameter(torch.randn(shape) * 0.05)
        self.g = nn.Parameter(torch.ones(cout))
        self.bias = nn.Parameter(torch.zeros(cout))
        if mask is not None:
            if tuple(mask.shape) != shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} is not the weight's {shape}")
            self.register_buffer("mask", mask.to(self.v.dtype))
        else:
            self.mask = None
        self.pending_init = False

    def direction(self) -> Tensor:
        """``(M v) / ||M v||`` per output channel."""
        v = self.v if self.mask is None else self.v * self.mask
        dims = (0, 2, 3) if self.transposed else (1, 2, 3)
        return v / v.pow(2).sum(dims, keepdim=True).sqrt().clamp_min(1e-12)

    def _conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        pad = self.kernel // 2
        if self.transposed:
            return F.conv_transpose2d(x, weight, bias, self.stride, pad, output_padding=self.stride - 1)
        return F.conv2d(x, weight, bias, self.stride, pad)

    def forward(self, x: Tensor) -> Tensor:
        direction = self.direction()
        if self.pending_init:
            with torch.no_grad():
                t = self._conv(x, direction, None)
                mean, std = t.mean((0, 2, 3)), t.std((0, 2, 3), unbiased=False)
                # a channel the batch leaves constant (the learned top starts at 0) keeps g = s
                scale = self.init_scale / torch.where(std > 1e-3, std, torch.ones_like(std))
                self.g.copy_(scale)
                self.bias.copy_(-mean * scale)
            self.pending_init = False
        shape = (1, -1, 1, 1) if self.transposed else (-1, 1, 1, 1)
        return self._conv(x, direction * self.g.view(shape), self.bias)


def conv_params(cin: int, cout: int, kernel: int) -> int:
    """Parameters of one :class:`DataInitConv2d`: ``v``, ``g`` and the bias."""
    return cin * cout * kernel * kernel + 2 * cout


@contextmanager
def data_init(module: nn.Module):
    """Within the block, the next forward of every :class:`DataInitConv2d` in ``module`` sets its
    ``g`` and bias from the batch it sees (in the order the forward pass reaches them)."""
    convs = [m for m in module.modules() if isinstance(m, DataInitConv2d)]
    for conv in convs:
        conv.pending_init = True
    try:
        yield
    finally:
        for conv in convs:
            conv.pending_init = False
