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

:func:`conv_breakdown` says why a workload's convolutions run slower in place than replayed: per
distinct call, its time in place and the layouts it saw there, against the replay (the same
operands every call, hot in cache), the replay cycling through 16 sets of operands, and the replay
with the caches flushed before each call (every operand read from memory). A flow's activations
and weights lie between: touched earlier in the step, evicted in part by everything since.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from typing import Callable, NamedTuple

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


class ConvRow(NamedTuple):
    """One distinct convolution call of a workload: ``op`` (``convolution`` or
    ``convolution_backward``), its tensor shapes and the layouts they had in place (``C`` NCHW,
    ``L`` channels_last, ``S`` another strided view, ``-`` not 4-D), how often one call of the
    workload runs it, and seconds per call: in place (median), replayed on the same operands in
    the faster layout (the ceiling's replay), cycling through fresh sets of operands, and on the
    same operands with the caches flushed before each call."""

    op: str
    shapes: tuple
    layouts: str
    count: int
    in_place: float
    replay: float
    replay_fresh: float
    replay_cold: float


def _layout(tensor: torch.Tensor) -> str:
    if tensor.dim() != 4:
        return "-"
    if tensor.is_contiguous():
        return "C"
    return "L" if tensor.is_contiguous(memory_format=torch.channels_last) else "S"


class _TimeEachConv(TorchDispatchMode):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self.seconds: defaultdict[ConvCall, list[float]] = defaultdict(list)
        self.layouts: dict[ConvCall, str] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func not in (aten.convolution.default, aten.convolution_backward.default):
            return func(*args, **(kwargs or {}))
        start = self.clock()
        out = func(*args, **(kwargs or {}))
        key = _key(func, args)
        self.seconds[key].append(self.clock() - start)
        self.layouts[key] = "".join(_layout(a) for a in args if isinstance(a, torch.Tensor))
        return out


def _replay_fresh(call: ConvCall, channels_last: bool, repeats: int, operands: int) -> float:
    """Median seconds of ``call`` alone, run on ``operands`` different sets of tensors in turn:
    each call's operands were last touched ``operands - 1`` calls ago."""
    sets = [_inputs(call, channels_last) for _ in range(operands)]
    times = []
    with torch.no_grad():
        for round_ in range(repeats * operands + operands):
            func, args = sets[round_ % operands]
            start = time.perf_counter()
            func(*args)
            if round_ >= operands:  # one warm-up pass over the sets
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _replay_cold(call: ConvCall, channels_last: bool, repeats: int, flush_bytes: int) -> float:
    """Median seconds of ``call`` alone, with the CPU caches flushed before each call (a
    ``flush_bytes`` buffer written between calls, larger than the last-level cache): its operands
    come from memory, as a flow's activations and weights do inside a step."""
    func, args = _inputs(call, channels_last)
    scratch = torch.empty(flush_bytes // 4)
    times = []
    with torch.no_grad():
        func(*args)
        for _ in range(repeats):
            scratch.fill_(1.0)
            start = time.perf_counter()
            func(*args)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_breakdown(fn: Callable[[], object], calls: int = 5, repeats: int = 5, operands: int = 16,
                   flush_bytes: int = 256 << 20) -> list[ConvRow]:
    """Each distinct convolution ``fn()`` runs, timed in place over ``calls`` calls of ``fn`` (after
    one warm-up call), and replayed alone in its faster layout: as the ceiling replays it (hot),
    cycling through ``operands`` sets of tensors, and with the caches flushed before each call
    (:class:`ConvRow`), the slowest in place first. Wall clock: run it on a quiet machine."""
    fn()
    with _TimeEachConv(time.perf_counter) as timer:
        for _ in range(calls):
            fn()
    rows = []
    for call, seconds in timer.seconds.items():
        channels_last = _replay(call, True, repeats) < _replay(call, False, repeats)
        shapes = tuple(arg[1] for arg in call[1] if isinstance(arg, tuple) and arg[:1] == ("tensor",))
        rows.append(ConvRow(call[0].__name__.split(".")[0], shapes, timer.layouts[call], len(seconds) // calls,
                            statistics.median(seconds), _replay(call, channels_last, repeats),
                            _replay_fresh(call, channels_last, repeats, operands),
                            _replay_cold(call, channels_last, repeats, flush_bytes)))
    return sorted(rows, key=lambda row: -row.count * row.in_place)
