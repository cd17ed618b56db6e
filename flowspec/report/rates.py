"""Achieved conv / matmul rates at a spec's own shapes (``--device cpu``).

A small convolution (a 2x2 or 4x4 image, a few channels) runs far below the rate of a large one:
the peak measured on a 512x512 matmul or a 64-channel 16x16 conv overstates what the layers of a
small flow get. :class:`ShapeRates` times each distinct conv / linear of a spec once, at the
report's batch (fewer examples when one call would exceed ``target_flops``), and the roofline
divides each layer's conv / matmul FLOPs by the rate achieved at that layer's own shapes.

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


class MatmulOp(NamedTuple):
    """A conv (``spatial = (H, W)``, ``kernel`` k, padding ``k // 2``) or a linear
    (``spatial = ()``, ``kernel`` 1) from ``cin`` to ``cout`` channels / features."""

    cin: int
    cout: int
    kernel: int
    spatial: tuple

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
            return [MatmulOp(i, o, k, spatial) for i, o, k in config.conditioner.convs(n_in, n_out)]
        return [MatmulOp(i, o, 1, ()) for i, o in config.conditioner.linears(n_in, n_out)]
    if isinstance(config, SplitConfig) and config.prior == "conditional":
        kept, factored = kept_channels(in_shape[0]), in_shape[0] // 2
        return [MatmulOp(kept, 2 * factored, 3 if image else 1, spatial)]
    if isinstance(config, InvConvConfig):
        return [MatmulOp(in_shape[0], in_shape[0], 1, spatial)]
    return []


class ShapeRates:
    """Measures, once per distinct ``(op, batch)``, the FLOP/s one forward call achieves on this
    machine (best of ``repeats`` after a warm-up, no autograd, torch's current thread count)."""

    def __init__(self, repeats: int = 3, target_flops: float = 5e7, budget_s: float = 2.0):
        self.repeats, self.target_flops, self.budget_s = repeats, target_flops, budget_s
        self.rates: dict[tuple[MatmulOp, int], float] = {}
        self.spent = 0.0  # seconds spent measuring
        self.fallback: float | None = None  # rate used once the time budget is spent

    def _examples(self, op: MatmulOp, batch: int) -> int:
        return max(1, min(batch, math.ceil(self.target_flops / op.flops())))

    @torch.no_grad()
    def _time(self, op: MatmulOp, examples: int) -> float:
        if op.spatial:
            x = torch.randn(examples, op.cin, *op.spatial)
            w, b = torch.randn(op.cout, op.cin, op.kernel, op.kernel), torch.randn(op.cout)
            fn = lambda: F.conv2d(x, w, b, padding=op.kernel // 2)  # noqa: E731
        else:
            x, w, b = torch.randn(examples, op.cin), torch.randn(op.cout, op.cin), torch.randn(op.cout)
            fn = lambda: F.linear(x, w, b)  # noqa: E731
        fn()
        best = float("inf")
        for _ in range(self.repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    def rate(self, op: MatmulOp, batch: int, peak: float) -> float:
        """Achieved FLOP/s of ``op`` at ``batch`` (at most ``peak``)."""
        examples = self._examples(op, batch)
        key = (op, examples)
        if key not in self.rates:
            if self.spent > self.budget_s:  # a huge spec: stop measuring, use what was seen
                return self.fallback if self.fallback else peak
            start = time.perf_counter()
            seconds = self._time(op, examples)
            self.spent += time.perf_counter() - start
            self.rates[key] = min(peak, examples * op.flops() / max(seconds, 1e-9))
            self.fallback = min(self.rates.values())
        return self.rates[key]
