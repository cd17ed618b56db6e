"""Benchmark: the cost report's roofline prediction of a training step vs the measured step, on this CPU.

    python benchmarks/report_vs_measured.py                       # specs/glow-digits.yaml, batch 64
    python benchmarks/report_vs_measured.py --spec specs/glow-bench.yaml --batch 16

Target (issue 5): predicted within a factor of 2 of measured. Prints the CPU's measured peaks, the
range of conv / linear rates achieved at the spec's own shapes (what the roofline uses per layer),
the predicted and measured training-step times (forward + backward of bits/dim, best of 3) and
their ratio, and a breakdown: the measured forward alone (with autograd) and backward vs the
predicted ones, the per-layer forward sum (no autograd) vs the roofline forward, and the largest
per-layer gaps. The CPU is shared, so times
are noisy; the figures are what this run measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "glow-digits.yaml"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the forward-only timing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))

    import flowspec
    from flowspec.report import measure_cpu, report_spec
    from flowspec.report.costs import fmt_time

    cpu = measure_cpu()
    print(f"cpu         {args.threads} thread(s): matmul {cpu.measured['matmul_flops'] / 1e9:.1f} GFLOP/s, "
          f"conv {cpu.measured['conv_flops'] / 1e9:.1f} GFLOP/s, copy bandwidth {cpu.bandwidth / 1e9:.1f} GB/s, "
          f"op latency {cpu.latency * 1e6:.1f} us forward, {cpu.latency_backward * 1e6:.1f} us backward")
    spec = flowspec.load_spec(args.spec)
    report = report_spec(spec, cpu, batch=args.batch, measure=True)
    predicted, measured = report.time_train_step, report.measured_train_step
    rates = sorted(cpu.shape_rates.rates.values())
    backward = sorted(cpu.shape_rates.backward_rates.values())
    print(f"shapes      {len(rates)} conv / linear shapes measured in {cpu.shape_rates.spent * 1e3:.0f} ms: "
          f"forward {rates[0] / 1e9:.2g} to {rates[-1] / 1e9:.3g} GFLOP/s, "
          f"backward {backward[0] / 1e9:.2g} to {backward[-1] / 1e9:.3g} GFLOP/s")
    print(f"spec        {spec.name} at batch {args.batch}: {report.params:,} params, "
          f"forward {report.flops_forward / 1e9:.3f} GFLOP")
    print(f"predicted   training step {fmt_time(predicted)} (roofline forward {fmt_time(report.time_forward)} "
          f"+ backward {fmt_time(report.time_backward)})")
    print(f"measured    training step {fmt_time(measured)} (best of 3)")
    print(f"ratio       measured / predicted = {measured / predicted:.2f} "
          f"({'within' if 0.5 <= measured / predicted <= 2 else 'outside'} the factor-2 target)")

    model = flowspec.FlowModel(flowspec.build_graph(spec))
    data = torch.randint(0, spec.input.levels, (args.batch, *model.input_shape)).float()
    model.initialize(data)
    model.train()
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.bits_per_dim(data).mean()
        best = min(best, time.perf_counter() - start)
    layer_sum = sum(r.measured_forward for r in report.rows if r.measured_forward is not None)
    print(f"breakdown   measured forward with autograd {fmt_time(best)} (predicted {fmt_time(report.time_forward)}), "
          f"backward ~ {fmt_time(measured - best)} (predicted {fmt_time(report.time_backward)}); "
          f"measured backward / forward = {(measured - best) / best:.1f}")
    print(f"breakdown   per-layer forward sum (no autograd) {fmt_time(layer_sum)} vs roofline "
          f"{fmt_time(report.time_forward)} ({layer_sum / report.time_forward:.1f} x)")
    gaps = sorted((r for r in report.rows if r.measured_forward), key=lambda r: r.measured_forward - r.time_forward,
                  reverse=True)[:3]
    for row in gaps:
        print(f"gap         {row.name:<24} measured {fmt_time(row.measured_forward):>9}  roofline "
              f"{fmt_time(row.time_forward):>9}  ({row.bottleneck}-bound, {row.flops_forward / 1e6:.2f} MFLOP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
