"""Wall-clock measurement shared by every family's ``report --measure``."""

from __future__ import annotations

import time


def best_time(fn, repeats: int) -> float:
    """Shortest wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_train_step(report, model, data, repeats: int):
    """``report.measured_train_step``: forward + backward of the mean bits/dim of ``data`` (any
    family, :class:`~flowspec.core.protocol.DensityModel`), best of ``repeats``; returns ``report``."""
    def step():
        model.zero_grad(set_to_none=True)
        model.bits_per_dim(data).mean().backward()

    report.measured_train_step = best_time(step, repeats)
    return report
