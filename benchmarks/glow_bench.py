"""Issue 7's benchmark, one command: ``python benchmarks/glow_bench.py`` (options: ``--help``).

Measures, on ``specs/glow-bench.yaml`` (3x32x32, L=3, K=8, width 128, affine coupling, LU 1x1
conv, actnorm, learned split priors; batch 16; float32; 1 thread by default):

* training-step throughput (images/s), plain and with invertible backprop;
* sampling throughput (images/s), plain and folded (actnorm folded into the 1x1 convs);
* achieved FLOP/s of a training step as a fraction of this machine's measured conv peak;
* the conv ceiling of each contestant (the rate if only its convolutions took time, each in its
  faster layout) and issue 7's targets as fractions of flowspec's ceiling;
* activations saved for backward and the peak RSS a step adds, at K=8 and K=32, with and without
  invertible backprop;
* normflows' and FrEIA's Glow of the same shape side by side (alternating runs, medians, ratios)
  when they are installed (``pip install normflows FrEIA``); skipped with a line otherwise.

``--clock cpu`` times every contestant by this process's CPU seconds instead of elapsed ones: on
a loaded machine the time spent waiting for a core is left out (one thread, idle machine: the two
agree).

Every figure is measured when the script runs; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flowspec.bench.measure import bench
from flowspec.core.speed import keep_freed_memory
from flowspec.spec import load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "glow-bench.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(SPEC))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time flowspec under torch.compile (training.compile)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time by elapsed seconds, or by this process's CPU seconds (a loaded machine)")
    args = parser.parse_args()
    keep_freed_memory()  # as `flowspec bench` does: every contestant's activations reuse freed memory
    torch.set_num_threads(args.threads)
    report = bench(args.spec, load_spec(args.spec), batch=args.batch, repeats=args.repeats,
                   baselines=not args.no_baselines, memory=not args.no_memory, compile=args.compile,
                   clock=args.clock)
    for line in report.lines():
        print(line, flush=True)
    activations = report.activations
    if "K=8 standard" in activations and "K=32 invertible" in activations:
        growth = activations["K=32 standard"] / activations["K=8 standard"]
        growth_inv = activations["K=32 invertible"] / activations["K=8 invertible"]
        print(f"summary     saved activations K=32 / K=8: standard {growth:.2f}x, invertible backprop "
              f"{growth_inv:.2f}x")


if __name__ == "__main__":
    main()
