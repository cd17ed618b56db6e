"""The convolution floor of a workload: how fast it could possibly run on torch's conv kernels.

Every convolution and matrix product a call makes is recorded at the dispatcher (``aten.convolution``
forward and ``aten.convolution_backward`` with its output mask, so exactly the gradients the step
needs; ``aten.mm`` / ``addmm`` / ``bmm`` / ``baddbmm``, forward and backward alike). Each distinct
call is then re-run alone on random tensors in each of its forms, and the fastest form's time is
kept: a convolution in NCHW and in channels_last layout, and a 1x1 convolution (stride 1, no
padding, one group) also as the matrix product it is, over the channels_last pixels (``mm``) and
per example over the NCHW pixels (``bmm``), bias and gradients included; a matrix product on its
operands laid out as they were in place and on contiguous copies. The sum over all recorded calls
is the **conv floor**: the time of the step if everything but its convolutions and products were
free and each ran in its fastest form. ``batch / floor`` is a ceiling on the throughput of *any*
implementation of the same architecture that uses torch's kernels, ours and the baselines' alike,
whether it runs a 1x1 convolution as a convolution or as a product. A workload without any
convolution (a vector flow) has no conv floor.

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
ConvCall = tuple  # (op, (("tensor", shape, dtype, strides) or the argument, ...)), hashable
CONVOLUTIONS = (aten.convolution.default, aten.convolution_backward.default)
PRODUCTS = (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default)
RECORDED = CONVOLUTIONS + PRODUCTS


def _key(func, args) -> ConvCall:
    def describe(arg):
        if isinstance(arg, torch.Tensor):
            return ("tensor", tuple(arg.shape), arg.dtype, tuple(arg.stride()))
        if isinstance(arg, (list, tuple)):
            return tuple(arg)
        return arg

    return (func, tuple(describe(a) for a in args))


class _RecordConvs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[ConvCall] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in RECORDED:
            self.calls[_key(func, args)] += 1
        return func(*args, **(kwargs or {}))


class _TimeConvs(TorchDispatchMode):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock, self.seconds = clock, 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in RECORDED:
            start = self.clock()
            out = func(*args, **(kwargs or {}))
            self.seconds += self.clock() - start
            return out
        return func(*args, **(kwargs or {}))


class ConvsInPlace:
    """``fn`` wrapped so that every call records the seconds its own convolutions took where they
    ran, inside the workload (its layouts, its cache state; matrix products too, as the ceiling
    counts them). Timed as one more contestant in the
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
    """Every convolution and matrix product (forward and backward) ``fn()`` runs, with its call count."""
    with _RecordConvs() as recorder:
        fn()
    return recorder.calls


def _tensor(described: tuple, strided: bool) -> torch.Tensor:
    """A random tensor of a recorded shape: with its recorded strides (a transposed or expanded
    view of fresh storage), or contiguous."""
    _, shape, dtype, stride = described
    if not strided:
        return torch.randn(shape, dtype=dtype)
    size = 1 + sum((n - 1) * st for n, st in zip(shape, stride)) if all(shape) else 0
    return torch.randn(size, dtype=dtype).as_strided(shape, stride)


def _is_tensor(arg) -> bool:
    return isinstance(arg, tuple) and arg[:1] == ("tensor",)


def _inputs(call: ConvCall, channels_last: bool) -> tuple:
    """``(func, args)``: the call on random operands, 4-D ones in NCHW or channels_last layout
    (a convolution), or laid out as recorded (``channels_last`` True) or contiguous (a product)."""
    func, described = call
    layout = torch.channels_last if channels_last else torch.contiguous_format
    args = []
    for arg in described:
        if _is_tensor(arg):
            if func in PRODUCTS:
                args.append(_tensor(arg, strided=channels_last))
                continue
            tensor = torch.randn(arg[1], dtype=arg[2])
            args.append(tensor.contiguous(memory_format=layout) if tensor.dim() == 4 else tensor)
        else:
            args.append(list(arg) if isinstance(arg, tuple) else arg)
    return func, args


def _pointwise(call: ConvCall) -> bool:
    """Whether ``call`` is a 1x1 convolution that is a matrix product: stride 1, no padding or
    dilation, not transposed, one group."""
    func, args = call
    if func is aten.convolution.default:
        weight, (stride, padding, dilation, transposed, _, groups) = args[1], args[3:9]
    elif func is aten.convolution_backward.default:
        weight, (stride, padding, dilation, transposed, _, groups) = args[2], args[4:10]
    else:
        return False
    return (tuple(weight[1][2:]) == (1, 1) and all(n == 1 for n in stride) and not any(padding)
            and all(n == 1 for n in dilation) and not transposed and groups == 1)


def _as_product(call: ConvCall, pixels_last: bool) -> Callable[[], object]:
    """A 1x1 convolution call as matrix products (:func:`pointwise_as_product`) on random operands."""
    func, args = call
    forward = func is aten.convolution.default
    x_shape, w_shape, dtype = (args[0][1], args[1][1], args[0][2]) if forward else (args[1][1], args[2][1], args[0][2])
    x, weight = torch.randn(x_shape, dtype=dtype), torch.randn(w_shape, dtype=dtype)
    if forward:
        bias = torch.randn(w_shape[0], dtype=dtype) if args[2] is not None else None
        return pointwise_as_product(pixels_last, x, weight, bias=bias)
    grad = torch.randn(x_shape[0], w_shape[0], *x_shape[2:], dtype=dtype)
    return pointwise_as_product(pixels_last, x, weight, grad=grad, mask=tuple(args[-1]))


def pointwise_as_product(pixels_last: bool, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         grad: torch.Tensor | None = None, mask: tuple = ()) -> Callable[[], object]:
    """A 1x1 convolution of ``x`` ``(B, in, H, W)`` by ``weight`` ``(out, in, 1, 1)`` as matrix
    products: ``mm`` over the channels_last pixels (``pixels_last``) or ``bmm`` per example over
    the NCHW pixels. Without ``grad`` the forward (``+ bias``), as ``aten.convolution`` returns
    it; with ``grad`` (the output's gradient) the backward with its output ``mask`` (input,
    weight, bias), as ``aten.convolution_backward`` returns it. The operands are laid out once,
    here; the returned callable runs the products (results as views in the convolution's shapes)."""
    b, i, h, w = x.shape
    o = weight.shape[0]
    matrix = weight.reshape(o, i)
    if grad is None:
        if pixels_last:
            rows = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).view(-1, i)

            def run():
                y = torch.mm(rows, matrix.t())
                if bias is not None:
                    y.add_(bias)
                return y.view(b, h, w, o).permute(0, 3, 1, 2)
        else:
            columns, expanded = x.contiguous().view(b, i, h * w), matrix.expand(b, o, i)

            def run():
                y = torch.bmm(expanded, columns)
                if bias is not None:
                    y.add_(bias.view(1, o, 1))
                return y.view(b, o, h, w)
        return run
    if pixels_last:
        grad_rows = grad.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).view(-1, o)
        rows = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).view(-1, i)

        def run():
            return (torch.mm(grad_rows, matrix).view(b, h, w, i).permute(0, 3, 1, 2) if mask[0] else None,
                    torch.mm(grad_rows.t(), rows).view(o, i, 1, 1) if mask[1] else None,
                    grad_rows.sum(0) if mask[2] else None)
    else:
        grad_columns, columns = grad.contiguous().view(b, o, h * w), x.contiguous().view(b, i, h * w)
        transposed = matrix.t().expand(b, i, o)

        def run():
            return (torch.bmm(transposed, grad_columns).view(b, i, h, w) if mask[0] else None,
                    torch.bmm(grad_columns, columns.transpose(1, 2)).sum(0).view(o, i, 1, 1) if mask[1] else None,
                    grad_columns.sum((0, 2)) if mask[2] else None)
    return run


def _form_makers(call: ConvCall) -> list[Callable[[], Callable[[], object]]]:
    """Every form the ceiling times ``call`` in, each as a maker of a callable on fresh random
    operands: NCHW and channels_last (a convolution) or as recorded and contiguous (a product),
    and for a 1x1 convolution its two matrix-product forms."""
    def plain(layout: bool) -> Callable[[], object]:
        func, args = _inputs(call, layout)
        return lambda: func(*args)

    makers = [lambda: plain(False), lambda: plain(True)]
    if _pointwise(call):
        makers += [lambda: _as_product(call, False), lambda: _as_product(call, True)]
    return makers


def _fastest(call: ConvCall, repeats: int) -> tuple[Callable[[], Callable[[], object]], Callable[[], object], float]:
    """The maker of ``call``'s fastest form, that form (its operands made once) and its best time
    in seconds."""
    timed = []
    with torch.no_grad():
        for maker in _form_makers(call):
            form = maker()
            timed.append((maker, form, best_time(form, repeats)))
    return min(timed, key=lambda entry: entry[2])


def _has_convolutions(calls: Counter[ConvCall]) -> bool:
    return any(call[0] in CONVOLUTIONS for call in calls)


def conv_floor(calls: Counter[ConvCall], repeats: int = 5) -> float:
    """Seconds the recorded convolutions and products take, each alone in its fastest form;
    0.0 when there are no convolutions among them (no conv floor)."""
    if not _has_convolutions(calls):
        return 0.0
    return sum(count * _fastest(call, repeats)[2] for call, count in calls.items())


def conv_replay(calls: Counter[ConvCall], repeats: int = 3) -> Callable[[], None] | None:
    """A callable that runs the recorded convolutions and products, each as often as it was
    recorded and in its fastest form (chosen here by timing every form), on tensors made once;
    None if there are no convolutions among them. Timed in the same rounds as the workload it came
    from, ``batch`` over its median time is the conv ceiling under the same machine load as the
    workload's own figure."""
    if not _has_convolutions(calls):
        return None
    plan = [(_fastest(call, repeats)[1], count) for call, count in calls.items()]

    def run() -> None:
        with torch.no_grad():
            for form, count in plan:
                for _ in range(count):
                    form()

    return run


class ConvRow(NamedTuple):
    """One distinct convolution or matrix-product call of a workload: ``op`` (``convolution``,
    ``convolution_backward``, ``mm``, ...), its tensor shapes and the layouts they had in place (``C`` NCHW,
    ``L`` channels_last, ``S`` another strided view, ``-`` not 4-D), how often one call of the
    workload runs it, and seconds per call: in place (median), replayed on the same operands in
    its fastest form (the ceiling's replay), cycling through fresh sets of operands, and on the
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
        if func not in RECORDED:
            return func(*args, **(kwargs or {}))
        start = self.clock()
        out = func(*args, **(kwargs or {}))
        key = _key(func, args)
        self.seconds[key].append(self.clock() - start)
        self.layouts[key] = "".join(_layout(a) for a in args if isinstance(a, torch.Tensor))
        return out


def _replay_fresh(maker: Callable[[], Callable[[], object]], repeats: int, operands: int) -> float:
    """Median seconds of a call's form alone, run on ``operands`` different sets of tensors in
    turn (``maker`` makes one each): each call's operands were last touched ``operands - 1`` calls
    ago."""
    forms = [maker() for _ in range(operands)]
    times = []
    with torch.no_grad():
        for round_ in range(repeats * operands + operands):
            form = forms[round_ % operands]
            start = time.perf_counter()
            form()
            if round_ >= operands:  # one warm-up pass over the sets
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _replay_cold(form: Callable[[], object], repeats: int, flush_bytes: int) -> float:
    """Median seconds of a call's form alone, with the CPU caches flushed before each call (a
    ``flush_bytes`` buffer written between calls, larger than the last-level cache): its operands
    come from memory, as a flow's activations and weights do inside a step."""
    scratch = torch.empty(flush_bytes // 4)
    times = []
    with torch.no_grad():
        form()
        for _ in range(repeats):
            scratch.fill_(1.0)
            start = time.perf_counter()
            form()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_breakdown(fn: Callable[[], object], calls: int = 5, repeats: int = 5, operands: int = 16,
                   flush_bytes: int = 256 << 20) -> list[ConvRow]:
    """Each distinct convolution and product ``fn()`` runs, timed in place over ``calls`` calls of
    ``fn`` (after one warm-up call), and replayed alone in its fastest form: as the ceiling replays it (hot),
    cycling through ``operands`` sets of tensors, and with the caches flushed before each call
    (:class:`ConvRow`), the slowest in place first. Wall clock: run it on a quiet machine."""
    fn()
    with _TimeEachConv(time.perf_counter) as timer:
        for _ in range(calls):
            fn()
    rows = []
    for call, seconds in timer.seconds.items():
        maker, form, replay = _fastest(call, repeats)
        shapes = tuple(arg[1] for arg in call[1] if _is_tensor(arg))
        rows.append(ConvRow(call[0].__name__.split(".")[0], shapes, timer.layouts[call], len(seconds) // calls,
                            statistics.median(seconds), replay, _replay_fresh(maker, repeats, operands),
                            _replay_cold(form, repeats, flush_bytes)))
    return sorted(rows, key=lambda row: -row.count * row.in_place)
