"""Benchmark: train the README's digits spec and the affine Glow on the bundled 8x8 digits and print
their test bits/dim with the wall and CPU time, side by side.

    python benchmarks/train_digits.py                  # the README's spec, then specs/glow-digits.yaml
    python benchmarks/train_digits.py --speed 3        # cost only: time per step, alternating runs
    python benchmarks/train_digits.py --specs specs/glow-digits.yaml --steps 3000 --threads 1

Each spec trains as ``flowspec train SPEC`` does (its own training section: steps, batch,
schedule, EMA; torch's default threads unless ``--threads``), then its EMA weights are scored on
the test split: the mean over 5 uniform-noise draws (single-sample bits/dim). Targets: the README's
spec <= 2.15 bits/dim at the wall clock of the affine Glow's run (so its step count is set from
the two specs' time per step); the affine Glow <= 2.30 (a reference Glow from another library
reaches 2.37).

``--speed R`` times ``--speed-steps`` training steps of each spec (Adam on ``bits_per_dim`` at its
spec's batch, lr and gradient clip, as the runner's step; no evaluation, checkpoint or sampling),
R rounds, the specs alternating within each round, and prints each spec's median wall and CPU
seconds per step and their ratio to the last spec's. On a shared CPU the wall times move with the
other jobs' load, the CPU times much less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README_SPEC = ROOT / "specs" / "flowpp-digits.yaml"  # what the README's first command trains
AFFINE_GLOW = ROOT / "specs" / "glow-digits.yaml"


def _config(spec, seed: int, steps: int | None = None, quick: bool = False):
    from flowspec.train.config import TrainingConfig

    base = (spec.training or TrainingConfig()).model_dump()
    steps = steps or base["steps"]
    overrides = {"steps": steps, "epochs": None, "seed": seed, "device": "cpu"}
    if quick:  # timing runs: no evaluation, checkpoint or samples until the end
        overrides |= {"eval_every": steps, "checkpoint_every": steps, "sample_every": 10 ** 9}
    return TrainingConfig(**{**base, **overrides})


def timed_train(spec, data, config, out: Path, log=None) -> tuple[object, float, float]:
    """(run result, wall seconds, CPU seconds of this process) of one ``train`` call."""
    from flowspec.train.runner import train

    wall, cpu = time.perf_counter(), time.process_time()
    result = train(spec, data, config, out, progress=False, **({"log": log} if log else {}))
    return result, time.perf_counter() - wall, time.process_time() - cpu


def speed(paths: list[str], data, rounds: int, steps: int, scratch: Path) -> None:
    """Per-step wall and CPU seconds of each spec's training step (Adam on ``bits_per_dim`` with
    its spec's batch, lr and gradient clip, as the runner's step; no evaluation or sampling), the
    specs alternating within each round."""
    import flowspec

    models = {}
    for path in paths:
        spec = flowspec.load_spec(path)
        config = _config(spec, 0)
        torch.manual_seed(0)
        model = flowspec.compile(spec).train()
        model.initialize(data.train[: config.batch_size].float())  # data-dependent inits
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        models[path] = (model, optimizer, config)

    def run(path: str, n: int) -> tuple[float, float]:
        model, optimizer, config = models[path]
        generator = torch.Generator().manual_seed(n)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            index = torch.randint(0, len(data.train), (config.batch_size,), generator=generator)
            loss = model.bits_per_dim(data.train[index].float()).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
            optimizer.step()
        return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n

    for path in paths:
        run(path, 5)  # warm-up
    per_step: dict[str, list[tuple[float, float]]] = {path: [] for path in paths}
    for r in range(rounds):
        for path in paths:
            wall, cpu = run(path, steps)
            per_step[path].append((wall, cpu))
            print(f"round {r} {path}: {1000 * wall:.1f} ms/step wall, {1000 * cpu:.1f} ms/step CPU", flush=True)
    reference = paths[-1]
    ref_wall = statistics.median(w for w, _ in per_step[reference])
    ref_cpu = statistics.median(c for _, c in per_step[reference])
    print(f"\nmedian over {rounds} rounds of {steps} steps ({torch.get_num_threads()} thread(s)); ratio to {reference}")
    for path in paths:
        wall = statistics.median(w for w, _ in per_step[path])
        cpu = statistics.median(c for _, c in per_step[path])
        print(f"{path}: {1000 * wall:.1f} ms/step wall ({wall / ref_wall:.2f}x), {1000 * cpu:.1f} ms/step CPU "
              f"({cpu / ref_cpu:.2f}x)")


def score(paths: list[str], data, seed: int, steps: int | None, scratch: Path, keep: Path | None) -> None:
    """Train each spec as ``flowspec train`` would and print its test bits/dim and times."""
    import flowspec
    from flowspec.train.runner import evaluate_draws

    rows = []
    for path in paths:
        spec = flowspec.load_spec(path)
        config = _config(spec, seed, steps)
        params = sum(p.numel() for p in flowspec.compile(spec).parameters())
        print(f"spec {path}: {params:,} parameters; {config.steps} steps at batch {config.batch_size}, lr "
              f"{config.lr:g} ({config.optimizer}, warm-up {config.warmup}, decay {config.lr_decay}, EMA "
              f"{config.ema}); {torch.get_num_threads()} thread(s)", flush=True)
        out = (keep / Path(path).stem) if keep else scratch / Path(path).stem
        result, wall, cpu = timed_train(spec, data, config, out, log=lambda line: print(line, flush=True))
        draws = evaluate_draws(flowspec.load_model(out / "last.pt"), data.test, draws=5)  # EMA weights
        rows.append((path, draws, config.steps, wall, cpu))
        print(f"{path}: test bits/dim {draws.mean:.4f} (5 noise draws: min {min(draws.values):.4f}, max "
              f"{max(draws.values):.4f}, s.e. {draws.stderr:.4f}); {config.steps} steps in {wall:.0f} s wall, "
              f"{cpu:.0f} s CPU ({1000 * wall / config.steps:.0f} ms/step)" + (f"; run folder {out}" if keep else ""),
              flush=True)
    print("\nspec, test bits/dim (EMA, mean of 5 noise draws), steps, wall s, CPU s")
    for path, draws, steps_run, wall, cpu in rows:
        target = 2.15 if Path(path).resolve() == README_SPEC else 2.30 if Path(path).resolve() == AFFINE_GLOW else None
        verdict = "" if target is None else f"  (target <= {target}: {'met' if draws.mean <= target else 'NOT met'})"
        print(f"{path}  {draws.mean:.4f}  {steps_run}  {wall:.0f}  {cpu:.0f}{verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=[str(README_SPEC), str(AFFINE_GLOW)])
    parser.add_argument("--steps", type=int, default=None, help="steps of every spec (default: each spec's own)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as flowspec train)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed", type=int, default=0, metavar="ROUNDS", help="only time the steps, ROUNDS rounds")
    parser.add_argument("--speed-steps", type=int, default=60)
    parser.add_argument("--out", default=None, help="keep the run folders under this folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from flowspec.data import load_data

    data = load_data("digits", None, (1, 8, 8), 17)
    with tempfile.TemporaryDirectory(prefix="flowspec-bench-") as scratch:
        if args.speed:
            speed(args.specs, data, args.speed, args.speed_steps, Path(scratch))
        else:
            score(args.specs, data, args.seed, args.steps, Path(scratch), Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
