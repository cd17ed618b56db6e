"""Benchmark: conditional flows. Prints three comparisons:

1. digits: ``specs/glow-digits-cond.yaml`` (class-conditional) vs ``specs/glow-digits.yaml``
   (unconditional), same steps, batch and optimizer: test bits/dim (mean of ``--draws`` dequantization
   draws, with its standard error), and the training time of each;
2. the class accuracy of conditional samples at temperature 0.7 (``--per-class`` per digit), judged by a
   scikit-learn classifier (logistic regression on the 64 grey levels) fitted on the digits train split,
   with its accuracy on the real test split beside it (and the accuracy at temperature 1.0);
3. MAF on wine, p(features | cultivar), standardized with the train split's statistics: flowspec's
   ``maf`` against nflows' and zuko's MAF where installed, at the same depth (2 autoregressive layers,
   orders reversed between them; 1 and 2 hidden layers per MADE), width 16, conditioning input (the one-hot
   cultivar), optimizer (Adam, lr 2e-3, weight decay 0.01), batches and step budget: test nats/dim
   (mean over ``--seeds`` seeds, with its standard error) and the mean time of a training step.

    python benchmarks/conditional.py                          # all three (digits: 2000 steps each)
    python benchmarks/conditional.py --part maf --seeds 5
    python benchmarks/conditional.py --part digits --steps 500

Targets (the issue's): conditional samples classified as their class >= 90% of the time; conditional
test bits/dim below the unconditional; on the MAF example a test log-likelihood at least as good as the
best installed peer's at an equal step budget, and a training step no slower. nflows and zuko are not
project dependencies (``pip install zuko nflows``); nflows imports matplotlib for a plotting helper at
import time, so when matplotlib is missing the script registers an empty ``matplotlib.pyplot`` module
before importing nflows (nothing of it is called). The CPU is shared with other jobs: times are noisy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


# -- 1 and 2: digits --------------------------------------------------------------------------------

def train_digits(spec_path: Path, steps: int, seed: int, draws: int):
    import flowspec
    from flowspec.train.conditions import load_spec_data, split_conditions
    from flowspec.train.config import TrainingConfig
    from flowspec.train.runner import evaluate, train

    spec = flowspec.load_spec(spec_path)
    base = spec.training or TrainingConfig()
    config = TrainingConfig(**{**base.model_dump(), "steps": steps, "epochs": None, "seed": seed, "device": "cpu",
                               "eval_every": steps, "sample_every": steps, "checkpoint_every": steps})
    data = load_spec_data(spec, "digits", None)
    _, test_conditions = split_conditions(spec, data)
    model = flowspec.compile(spec)
    with tempfile.TemporaryDirectory(prefix="flowspec-bench-") as scratch:
        tic = time.perf_counter()
        train(spec, data, config, scratch, progress=False, model=model, log=lambda line: None)
        seconds = time.perf_counter() - tic
        from flowspec.compile.export import load_model

        trained = load_model(Path(scratch) / "last.pt")  # the EMA weights, as eval reads them
    values = [evaluate(trained, data.test, seed=seed + i, conditions=test_conditions) for i in range(draws)]
    return trained, data, mean_se(values), seconds


def class_accuracy(model, data, per_class: int, temperature: float, seed: int) -> tuple[float, float, list[float], int]:
    """(sample accuracy, real test accuracy, per-class sample accuracy, non-finite samples) of a logistic
    regression fitted on the train split; a sample whose inverse overflowed (non-finite) counts as wrong."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=5000, C=0.1)
    classifier.fit(data.train.reshape(len(data.train), -1).numpy(), data.labels_train.numpy())
    real = float((classifier.predict(data.test.reshape(len(data.test), -1).numpy()) == data.labels_test.numpy()).mean())
    labels = torch.arange(10).repeat_interleave(per_class)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        samples = model.to_data_space(model.sample(len(labels), temperature, generator=generator, c=labels))
    samples = samples.reshape(len(labels), -1)
    finite = torch.isfinite(samples).all(1)
    predicted = classifier.predict(torch.where(finite[:, None], samples, 0.0).numpy())
    hits = (predicted == labels.numpy()) & finite.numpy()
    per = [float(hits[labels.numpy() == k].mean()) for k in range(10)]
    return float(hits.mean()), real, per, int((~finite).sum())


def digits_part(args) -> None:
    cond_spec, plain_spec = ROOT / "specs" / "glow-digits-cond.yaml", ROOT / "specs" / "glow-digits.yaml"
    print(f"digits: {args.steps} steps each, batch 64, 1 thread; test bits/dim over {args.draws} dequantization "
          f"draws (EMA weights)", flush=True)
    plain, _, (plain_bpd, plain_se), plain_time = train_digits(plain_spec, args.steps, args.seed, args.draws)
    print(f"  unconditional  {plain_spec.name:24s} {plain_bpd:.4f} +- {plain_se:.4f} bits/dim  "
          f"({sum(p.numel() for p in plain.parameters()):,} params, {plain_time:.0f} s)", flush=True)
    cond, data, (cond_bpd, cond_se), cond_time = train_digits(cond_spec, args.steps, args.seed, args.draws)
    print(f"  conditional    {cond_spec.name:24s} {cond_bpd:.4f} +- {cond_se:.4f} bits/dim  "
          f"({sum(p.numel() for p in cond.parameters()):,} params, {cond_time:.0f} s)", flush=True)
    print(f"  conditional - unconditional: {cond_bpd - plain_bpd:+.4f} bits/dim "
          f"({'below' if cond_bpd < plain_bpd else 'NOT below'} the unconditional figure)", flush=True)
    accuracy, real, per, bad = class_accuracy(cond, data, args.per_class, 0.7, args.seed)
    print(f"  class accuracy of conditional samples at T=0.7 ({args.per_class} per class): {100 * accuracy:.1f}% "
          f"(target >= 90%; {bad} non-finite); the classifier on the real test split: {100 * real:.1f}%", flush=True)
    print("  per class: " + " ".join(f"{k}:{100 * a:.0f}%" for k, a in enumerate(per)), flush=True)
    warm, _, _, bad = class_accuracy(cond, data, args.per_class, 1.0, args.seed)
    print(f"  (at T=1.0: {100 * warm:.1f}%, {bad} non-finite samples counted wrong)", flush=True)


# -- 3: MAF on wine ---------------------------------------------------------------------------------

MAF_SPEC = """
name: maf-wine-bench
input: {shape: [13], data: continuous}
condition: {kind: vector, dim: 3}
prior: standard
layers:
  - {kind: maf, hidden: 16, depth: DEPTH, order: natural}
  - {kind: maf, hidden: 16, depth: DEPTH, order: reversed}
"""


def flowspec_maf(depth: int = 1):
    import flowspec

    model = flowspec.compile(flowspec.loads_spec(MAF_SPEC.replace("DEPTH", str(depth))))
    return model, lambda x, c: -model.log_prob(x, condition=c)


def zuko_maf(depth: int = 1):
    import zuko

    flow = zuko.flows.MAF(features=13, context=3, transforms=2, hidden_features=[16] * depth)
    return flow, lambda x, c: -flow(c).log_prob(x)


def nflows_maf(depth: int = 1):
    """nflows' MADE has an initial masked layer and ``num_blocks`` more hidden layers: ``depth - 1``."""
    if "matplotlib" not in sys.modules:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # nflows imports pyplot for a plotting helper it never calls here
            stub = types.ModuleType("matplotlib")
            stub.pyplot = types.ModuleType("matplotlib.pyplot")
            sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = stub, stub.pyplot
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    transform = CompositeTransform([
        MaskedAffineAutoregressiveTransform(13, 16, context_features=3, num_blocks=depth - 1, use_residual_blocks=False),
        ReversePermutation(13),
        MaskedAffineAutoregressiveTransform(13, 16, context_features=3, num_blocks=depth - 1, use_residual_blocks=False)])
    flow = Flow(transform, StandardNormal([13]))
    return flow, lambda x, c: -flow.log_prob(x, context=c)


def run_maf(build, data, steps: int, seed: int, depth: int, batch: int = 32) -> tuple[float, float]:
    """(test nats/dim, seconds per training step)."""
    torch.manual_seed(seed)
    model, nll = build(depth)
    x, c = data.train, torch.nn.functional.one_hot(data.labels_train, 3).float()
    xt, ct = data.test, torch.nn.functional.one_hot(data.labels_test, 3).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(x), generator=generator) for _ in range(steps * batch // len(x) + 2)])
    model.train()
    tic = time.perf_counter()
    for step in range(steps):
        index = order[step * batch:(step + 1) * batch]
        loss = nll(x[index], c[index]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    per_step = (time.perf_counter() - tic) / steps
    model.eval()
    with torch.no_grad():
        return float(nll(xt, ct).mean()) / 13, per_step


def maf_part(args) -> None:
    from flowspec.data import load_data

    data = load_data("wine", None, (13,), None, classes=3, standardize=True)
    peers = {"flowspec": flowspec_maf}
    for name, build in (("nflows", nflows_maf), ("zuko", zuko_maf)):
        try:
            build()
            peers[name] = build
        except ImportError as error:
            print(f"  {name}: not installed ({error}); skipped", flush=True)
    for depth in args.maf_depth:
        maf_at_depth(args, data, peers, depth)


def maf_at_depth(args, data, peers, depth: int) -> None:
    print(f"MAF on wine (p(features | cultivar), standardized; {len(data.train)} train / {len(data.test)} test): "
          f"2 layers x {depth} hidden layer(s) of 16, one-hot cultivar, {args.maf_steps} Adam steps at batch 32, "
          f"{args.seeds} seeds", flush=True)
    results, runs_of = {}, {name: [] for name in peers}
    for s in range(args.seeds):  # libraries interleaved, so the shared CPU's load falls on each alike
        for name, build in peers.items():
            runs_of[name].append(run_maf(build, data, args.maf_steps, args.seed + s, depth))
    for name, runs in runs_of.items():
        nats, nats_se = mean_se([r[0] for r in runs])
        step, _ = mean_se([r[1] for r in runs])
        results[name] = nats, step
        print(f"  {name:9s} test nats/dim {nats:.4f} +- {nats_se:.4f}  (log-likelihood {-13 * nats:.3f} nats per "
              f"example); {1e3 * step:.2f} ms per training step", flush=True)
    others = {k: v for k, v in results.items() if k != "flowspec"}
    if others:
        best = min(others, key=lambda k: others[k][0])
        ours = results["flowspec"]
        print(f"  flowspec vs the best peer ({best}): {ours[0] - others[best][0]:+.4f} nats/dim, step time "
              f"{ours[1] / others[best][1]:.2f}x", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "digits", "maf"), default="all")
    parser.add_argument("--steps", type=int, default=2000, help="digits: training steps of each Glow")
    parser.add_argument("--draws", type=int, default=5, help="digits: dequantization draws of the test figure")
    parser.add_argument("--per-class", type=int, default=100, help="digits: conditional samples per class")
    parser.add_argument("--maf-steps", type=int, default=400)
    parser.add_argument("--maf-depth", type=int, nargs="+", default=[1, 2], help="MAF: hidden layers per MADE")
    parser.add_argument("--seeds", type=int, default=3, help="MAF: training seeds per library")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    if args.part in ("all", "maf"):
        maf_part(args)
    if args.part in ("all", "digits"):
        digits_part(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
