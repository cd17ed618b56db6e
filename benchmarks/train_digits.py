"""Benchmark: train ``specs/glow-digits.yaml`` on the bundled 8x8 digits and print the test bits/dim.

    python benchmarks/train_digits.py                      # 3000 steps at batch 64, one CPU thread
    python benchmarks/train_digits.py --steps 500 --lr 2e-3

Target: <= 2.30 bits/dim on the digits test split (300 images) with uniform dequantization
(a reference Glow from another library reaches 2.37). Also prints the importance-free single-sample
figure of the EMA weights and the wall time; the CPU is shared, so times are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "glow-digits.yaml"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import flowspec
    from flowspec.data import load_data
    from flowspec.train.config import TrainingConfig

    spec = flowspec.load_spec(args.spec)
    base = spec.training or TrainingConfig()
    overrides = {"steps": args.steps, "epochs": None, "batch_size": args.batch_size, "seed": args.seed,
                 "device": "cpu", "eval_every": max(args.steps // 6, 1), "sample_every": args.steps}
    if args.lr is not None:
        overrides["lr"] = args.lr
    config = TrainingConfig(**{**base.model_dump(), **overrides})
    data = load_data("digits", None, tuple(spec.input.shape), spec.input.levels)
    with tempfile.TemporaryDirectory(prefix="flowspec-bench-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        return run(spec, data, config, out, args.threads, args.spec, kept=args.out is not None)


def run(spec, data, config, out: Path, threads: int, spec_path: str, kept: bool) -> int:
    import flowspec
    from flowspec.train.runner import evaluate_draws, train

    print(f"spec {spec_path}: {sum(p.numel() for p in flowspec.compile(spec).parameters()):,} parameters; "
          f"train {len(data.train)} / test {len(data.test)} images; {config.steps} steps at batch "
          f"{config.batch_size}, lr {config.lr:g} ({config.optimizer}, warm-up {config.warmup}, "
          f"decay {config.lr_decay}, EMA {config.ema}); {threads} thread(s)", flush=True)
    tic = time.perf_counter()
    result = train(spec, data, config, out, progress=False, log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - tic
    model = flowspec.load_model(out / "last.pt")  # EMA weights
    draws = evaluate_draws(model, data.test, draws=5)
    mean, repeats = draws.mean, draws.values
    print(f"train bits/dim (last 100 steps, mean): {sum(result.losses[-100:]) / len(result.losses[-100:]):.4f}")
    print(f"test bits/dim (EMA weights, uniform dequantization, mean of 5 noise draws): {mean:.4f} "
          f"(min {min(repeats):.4f}, max {max(repeats):.4f}, s.e. {draws.stderr:.4f})")
    print(f"best periodic test bits/dim: {result.best_bpd:.4f}; wall time {seconds:.0f} s "
          f"({seconds / config.steps * 1000:.0f} ms/step)" + (f"; run folder {out}" if kept else ""))
    print(f"target <= 2.30: {'met' if mean <= 2.30 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
