"""Benchmark: uniform vs variational (Flow++) dequantization of the same Glow on the 8x8 digits.

    python benchmarks/dequantization.py                  # 1000 steps each at batch 64, one thread (~2 min)
    python benchmarks/dequantization.py --steps 3000 --k 64

Trains ``specs/glow-digits.yaml`` (uniform noise) and ``specs/glow-digits-vardeq.yaml`` (the same
flow with a 2-step variational dequantizer) through the project's runner
(:func:`flowspec.train.runner.train`, the code path of ``flowspec train``) with one and the same
:class:`~flowspec.train.config.TrainingConfig` for both: the ``training:`` section of
``specs/glow-digits.yaml`` with the command-line options on top. With the default options that is
Adam, lr 2e-3 with 100 linear warm-up steps then cosine decay to 0, weight decay 1e-3, gradient
norm clipped at 50, EMA of the weights with decay 0.999 (evaluation uses the averaged weights),
batch 64, 1000 steps, seed 0, on the CPU; the runner's data order and noise are seeded per step, so
both contestants see the same batches. Data: the fixed split of :func:`flowspec.data.load_digits`
(1497 train / 300 test). The run folders go to a temporary directory, removed at the end.

Prints for each the test bits/dim (one dequantization draw per image, mean of 5 draws,
:func:`flowspec.train.runner.evaluate_draws`), the importance-weighted figure over ``k`` draws, the
train loss of the last 100 steps and the wall time of the run (training plus the runner's final
evaluation, checkpoint and sample grid).

Flow++ (Ho et al. 2019, arXiv:1902.00275, table 2) found variational dequantization better than
uniform on CIFAR-10 / ImageNet; what this script prints is what we measured, whichever way it goes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = {"uniform": ROOT / "specs" / "glow-digits.yaml",
         "variational": ROOT / "specs" / "glow-digits-vardeq.yaml"}


def run(kind: str, data, config, k: int, out: Path) -> dict:
    """Train the ``kind`` spec with ``config`` in ``out``; evaluate its EMA weights on the test split."""
    import flowspec
    from flowspec.train.runner import evaluate, evaluate_draws, train

    spec = flowspec.load_spec(SPECS[kind])
    if spec.dequantization.kind != kind:
        raise SystemExit(f"{SPECS[kind]}: dequantization is {spec.dequantization.kind!r}, expected {kind!r}")
    tic = time.perf_counter()
    result = train(spec, data, config, out, progress=False)
    seconds = time.perf_counter() - tic
    model = flowspec.load_model(out / "last.pt")  # the EMA weights, as `flowspec eval` reads them
    one = evaluate_draws(model, data.test, 5, batch_size=300, seed=config.seed)
    iw = evaluate(model, data.test, batch_size=50, k=k, seed=config.seed)
    tail = result.losses[-100:]
    return {"kind": kind, "params": sum(p.numel() for p in model.parameters()),
            "dequantizer_params": sum(p.numel() for p in model.dequantizer.parameters()),
            "bpd": one.mean, "stderr": one.stderr, "iw": iw, "train": sum(tail) / len(tail), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--k", type=int, default=16, help="dequantization draws of the importance-weighted figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", default="uniform,variational")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = [kind for kind in kinds if kind not in SPECS]
    if unknown:
        parser.error(f"--kinds: unknown {', '.join(unknown)} (known: {', '.join(SPECS)})")
    torch.set_num_threads(args.threads)

    import flowspec
    from flowspec.data import load_digits
    from flowspec.train.config import TrainingConfig, override

    data = load_digits()
    base = flowspec.load_spec(SPECS["uniform"]).training or TrainingConfig()
    config = override(base, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                      seed=args.seed, device="cpu", eval_every=args.steps, checkpoint_every=args.steps,
                      sample_every=args.steps)
    print(f"digits: train {len(data.train)} / test {len(data.test)} images, 17 levels; {config.steps} steps "
          f"at batch {config.batch_size} through flowspec.train ({config.optimizer}, lr {config.lr:g}, warm-up "
          f"{config.warmup}, decay {config.lr_decay}, weight decay {config.weight_decay:g}, clip {config.grad_clip:g}, "
          f"EMA {config.ema if config.ema is not None else 'off'}), seed {config.seed}, {args.threads} thread(s)",
          flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="flowspec-dequant-bench-") as folder:
        for kind in kinds:
            r = run(kind, data, config, args.k, Path(folder) / kind)
            results.append(r)
            print(f"{kind:>11}: test bits/dim {r['bpd']:.4f} (one draw, mean of 5, s.e. {r['stderr']:.4f}), "
                  f"IW k={args.k} {r['iw']:.4f}; train (last 100 steps) {r['train']:.4f}; {r['params']:,} params "
                  f"({r['dequantizer_params']:,} in the dequantizer); {r['seconds']:.0f} s "
                  f"({r['seconds'] / config.steps * 1000:.0f} ms/step)", flush=True)
    if len(results) == 2:
        a, b = results
        diff = b["bpd"] - a["bpd"]
        better = b["kind"] if diff < 0 else a["kind"]
        print(f"{b['kind']} - {a['kind']}: {diff:+.4f} bits/dim (one draw), "
              f"{b['iw'] - a['iw']:+.4f} (IW k={args.k}); {better} is better at this budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
