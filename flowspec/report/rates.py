"""Achieved conv / matmul rates at a spec's own shapes (``--device cpu``).

A small convolution (a 2x2 or 4x4 image, a few channels) runs far below the rate of a large one:
the peak measured on a 512x512 matmul or a 64-channel 16x16 conv overstates what the layers of a
small flow get. :class:`ShapeRates` times each distinct conv / linear of a spec once, at the
report's batch (fewer examples when one call would exceed ``target_flops``), forward and backward,
and the roofline divides each layer's conv / matmul FLOPs by the rate achieved at that layer's own
shapes (its backward's ``2 x`` FLOPs by the backward rate). Past ``budget_s`` of measuring (a large
spec, or a loaded machine), further shapes get the rates of the measured call nearest in FLOPs.

:func:`matmul_ops` lists the conv / linear ops of a layer from its config, the same shapes its
cost rule counts (coupling conditioners, a conditional split's prior, invconv's 1x1 conv).
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F

from flowspec.layers.base import numel


def best_time(fn, repeats: int) -> float:
    """Shortest wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


class MatmulOp(NamedTuple):
    """A conv (``spatial = (H, W)``, ``kernel`` k, padding ``k // 2``) or a linear
    (``spatial = ()``, ``kernel`` 1) from ``cin`` to ``cout`` channels / features; a conv with
    ``channels_last`` is timed in that layout, as the conv conditioners run it."""

    cin: int
    cout: int
    kernel: int
    spatial: tuple
    channels_last: bool = False

    def flops(self) -> float:
        """Per example: 2 FLOPs per multiply-add."""
        return 2.0 * self.cin * self.cout * self.kernel ** 2 * max(1, numel(self.spatial))


def matmul_ops(config, in_shape: tuple) -> list[MatmulOp]:
    """The conv / linear ops one forward call of a layer runs per example (empty for elementwise
    layers and kinds this module does not know; those keep the device's peak rate)."""
    from flowspec.layers.conditioners import ConvConditioner
    from flowspec.layers.coupling import CouplingConfig
    from flowspec.layers.invconv import InvConvConfig
    from flowspec.layers.split import SplitConfig, kept_channels

    image = len(in_shape) == 3
    spatial = tuple(in_shape[1:]) if image else ()
    if isinstance(config, CouplingConfig):
        n_in, n_out = config._net_channels(in_shape)
        if isinstance(config.conditioner, ConvConditioner):
            return [MatmulOp(i, o, k, spatial, channels_last=True)
                    for i, o, k in config.conditioner.convs(n_in, n_out)]
        return [MatmulOp(i, o, 1, ()) for i, o in config.conditioner.linears(n_in, n_out)]
    if isinstance(config, SplitConfig) and config.prior == "conditional":
        kept, factored = kept_channels(in_shape[0]), in_shape[0] // 2
        return [MatmulOp(kept, 2 * factored, 3 if image else 1, spatial)]
    if isinstance(config, InvConvConfig):
        return [MatmulOp(in_shape[0], in_shape[0], 1, spatial)]
    return []


BACKWARD_FLOPS = 2.0  # a conv / linear's backward: input and weight gradients, each its forward's FLOPs


class ShapeRates:
    """Measures, once per distinct ``(op, batch)``, the FLOP/s one forward call (no autograd) and
    its backward (input, weight and bias gradients, ``2 x`` the forward FLOPs) achieve on this
    machine: best of ``repeats`` after a warm-up, at torch's current thread count."""

    def __init__(self, repeats: int = 3, target_flops: float = 5e7, budget_s: float = 2.0):
        self.repeats, self.target_flops, self.budget_s = repeats, target_flops, budget_s
        self.rates: dict[tuple[MatmulOp, int], float] = {}  # forward FLOP/s
        self.backward_rates: dict[tuple[MatmulOp, int], float] = {}  # backward FLOP/s
        self.spent = 0.0  # seconds spent measuring

    def _examples(self, op: MatmulOp, batch: int) -> int:
        return max(1, min(batch, math.ceil(self.target_flops / op.flops())))

    def _best(self, fn) -> float:
        return best_time(fn, self.repeats)

    def _time(self, op: MatmulOp, examples: int) -> tuple[float, float]:
        """(forward without autograd, backward: input, weight and bias gradients) in seconds."""
        if op.spatial:
            layout = torch.channels_last if op.channels_last else torch.contiguous_format
            x = torch.randn(examples, op.cin, *op.spatial).contiguous(memory_format=layout).requires_grad_()
            w = torch.randn(op.cout, op.cin, op.kernel, op.kernel).contiguous(memory_format=layout).requires_grad_()
            fn = lambda: F.conv2d(x, w, b, padding=op.kernel // 2)  # noqa: E731
        else:
            x, w = torch.randn(examples, op.cin, requires_grad=True), torch.randn(op.cout, op.cin, requires_grad=True)
            fn = lambda: F.linear(x, w, b)  # noqa: E731
        b = torch.randn(op.cout, requires_grad=True)
        with torch.no_grad():
            forward = self._best(fn)
        recorded = self._best(fn)
        grad = torch.randn_like(fn().detach())
        both = self._best(lambda: fn().backward(grad))
        return forward, max(both - recorded, 1e-9)

    def _measure(self, op: MatmulOp, batch: int, peak: float) -> tuple[float, float]:
        examples = self._examples(op, batch)
        key = (op, examples)
        if key not in self.rates:
            if self.spent > self.budget_s:  # budget spent: the rates of the nearest measured call
                return self._nearest(op, examples, peak)
            start = time.perf_counter()
            forward, backward = self._time(op, examples)
            self.spent += time.perf_counter() - start
            flops = examples * op.flops()
            self.rates[key] = min(peak, flops / max(forward, 1e-9))
            self.backward_rates[key] = min(peak, BACKWARD_FLOPS * flops / backward)
        return self.rates[key], self.backward_rates[key]

    def _nearest(self, op: MatmulOp, examples: int, peak: float) -> tuple[float, float]:
        """The rates measured for the call nearest in FLOPs (log scale); the peak if none was."""
        if not self.rates:
            return peak, peak
        flops = examples * op.flops()
        key = min(self.rates, key=lambda k: abs(math.log(k[1] * k[0].flops() / flops)))
        return self.rates[key], self.backward_rates[key]

    def rate(self, op: MatmulOp, batch: int, peak: float) -> float:
        """Achieved FLOP/s of ``op``'s forward at ``batch`` (at most ``peak``)."""
        return self._measure(op, batch, peak)[0]

    def backward_rate(self, op: MatmulOp, batch: int, peak: float) -> float:
        """Achieved FLOP/s of ``op``'s backward (``2 x`` its forward FLOPs: input and weight
        gradients) at ``batch`` (at most ``peak``)."""
        return self._measure(op, batch, peak)[1]
