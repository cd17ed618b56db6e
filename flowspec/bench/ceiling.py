"""The convolution floor of a workload: how fast it could possibly run on torch's conv kernels.

Every convolution a call makes is recorded at the dispatcher (``aten.convolution`` forward and
``aten.convolution_backward`` with its output mask, so exactly the gradients the step needs).
Each distinct call is then re-run alone on random tensors, in NCHW and in channels_last layout,
and the faster layout's best time is kept. The sum over all recorded calls is the **conv floor**:
the time of the step if everything but its convolutions were free and every convolution ran in
its best layout. ``batch / floor`` is a ceiling on the throughput of *any* implementation of the
same architecture that uses torch's convolutions, ours and the baselines' alike.

On glow-bench the convolutions are over 80% of a step, so this ceiling says how much any
bookkeeping (caching, fewer copies, fusing the elementwise ops) can still win.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from flowspec.report.rates import best_time

aten = torch.ops.aten
ConvCall = tuple  # (op, tensor shapes, other arguments), hashable


def _key(func, args) -> ConvCall:
    def describe(arg):
        if isinstance(arg, torch.Tensor):
            return ("tensor", tuple(arg.shape), arg.dtype)
        if isinstance(arg, (list, tuple)):
            return tuple(arg)
        return arg

    return (func, tuple(describe(a) for a in args))


class _RecordConvs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[ConvCall] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (aten.convolution.default, aten.convolution_backward.default):
            self.calls[_key(func, args)] += 1
        return func(*args, **(kwargs or {}))


class _TimeConvs(TorchDispatchMode):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock, self.seconds = clock, 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (aten.convolution.default, aten.convolution_backward.default):
            start = self.clock()
            out = func(*args, **(kwargs or {}))
            self.seconds += self.clock() - start
            return out
        return func(*args, **(kwargs or {}))


class ConvsInPlace:
    """``fn`` wrapped so that every call records the seconds its own convolutions took where they
    ran, inside the workload (its layouts, its cache state). Timed as one more contestant in the
    same rounds as the replay of the same calls alone (:func:`conv_replay`), ``replay / in place``
    is the share of the conv ceiling the workload would reach if nothing but its convolutions
    took time."""

    def __init__(self, fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> None:
        self.fn, self.clock = fn, clock
        self.seconds: list[float] = []

    def __call__(self) -> None:
        with _TimeConvs(self.clock) as timer:
            self.fn()
        self.seconds.append(timer.seconds)

    def median(self, skip: int = 0) -> float:
        """Median over the calls after the first ``skip`` (warm-up)."""
        return statistics.median(self.seconds[skip:])


def record_convs(fn: Callable[[], object]) -> Counter[ConvCall]:
    """Every convolution (forward and backward) ``fn()`` runs, with its call count."""
    with _RecordConvs() as recorder:
        fn()
    return recorder.calls


def _inputs(call: ConvCall, channels_last: bool) -> tuple:
    func, described = call
    layout = torch.channels_last if channels_last else torch.contiguous_format
    args = []
    for arg in described:
        if isinstance(arg, tuple) and arg[:1] == ("tensor",):
            tensor = torch.randn(arg[1], dtype=arg[2])
            args.append(tensor.contiguous(memory_format=layout) if tensor.dim() == 4 else tensor)
        else:
            args.append(list(arg) if isinstance(arg, tuple) else arg)
    return func, args


def _replay(call: ConvCall, channels_last: bool, repeats: int) -> float:
    func, args = _inputs(call, channels_last)
    with torch.no_grad():
        return best_time(lambda: func(*args), repeats)


def conv_floor(calls: Counter[ConvCall], repeats: int = 5) -> float:
    """Seconds the recorded convolutions take, each alone in its faster layout (NCHW or NHWC)."""
    return sum(count * min(_replay(call, False, repeats), _replay(call, True, repeats))
               for call, count in calls.items())


def conv_replay(calls: Counter[ConvCall], repeats: int = 3) -> Callable[[], None] | None:
    """A callable that runs the recorded convolutions, each as often as it was recorded and in its
    faster layout (chosen here by timing both), on tensors made once; None if there are none.
    Timed in the same rounds as the workload it came from, ``batch`` over its median time is the
    conv ceiling under the same machine load as the workload's own figure."""
    plan = []
    for call, count in calls.items():
        channels_last = _replay(call, True, repeats) < _replay(call, False, repeats)
        plan.append((*_inputs(call, channels_last), count))
    if not plan:
        return None

    def run() -> None:
        with torch.no_grad():
            for func, args, count in plan:
                for _ in range(count):
                    func(*args)

    return run
