"""Achieved conv / matmul rates at a spec's own shapes (``--device cpu``).

A small convolution (a 2x2 or 4x4 image, a few channels) runs far below the rate of a large one:
the peak measured on a 512x512 matmul or a 64-channel 16x16 conv overstates what the layers of a
small flow get. :class:`ShapeRates` times each distinct conv / linear of a spec once, at the
report's batch (fewer examples when one call would exceed ``target_flops``), forward and backward,
and the roofline divides each layer's conv / matmul FLOPs by the rate achieved at that layer's own
shapes (its backward's ``2 x`` FLOPs by the backward rate). Past ``budget_s`` of measuring (a large
spec, or a loaded machine), further shapes get the rates of the measured call nearest in FLOPs.

:func:`matmul_ops` asks a layer's kind for its conv / linear ops, the same shapes its cost rule
counts (a coupling's conditioner, a conditional split's prior, invconv's 1x1 conv).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from flowspec.core.measure import best_time  # noqa: F401  (its home before core; report code imports it here)
from flowspec.core.costs import MatmulOp


def matmul_ops(config, in_shape: tuple, context: tuple | None = None) -> list[MatmulOp]:
    """The conv / linear ops one forward call of a layer runs per example, as its kind declares
    them (empty for elementwise layers; those keep the device's peak rate)."""
    return config.matmul_ops(tuple(in_shape), context)


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
