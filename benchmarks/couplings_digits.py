"""Benchmark: coupling transforms at an equal wall-clock budget on the bundled 8x8 digits.

    python benchmarks/couplings_digits.py                     # 300 s per run, 3 seeds, one CPU thread
    python benchmarks/couplings_digits.py --budget 60 --seeds 3
    python benchmarks/couplings_digits.py --budget 90 --clock cpu   # on a loaded machine

Recipes (each its spec's own training section, steps set by the budget):

* ``affine``: ``specs/glow-digits.yaml`` (Glow's affine coupling, sigmoid scale);
* ``spline``: ``specs/glow-digits-spline.yaml`` (rational-quadratic, 8 bins on [-3, 3]);
* ``mixlogistic``: glow-digits with ``transform: {kind: mixlogistic, components: 8}``;
* ``flowpp``: ``specs/flowpp-digits.yaml`` (Flow++'s recipe: logistic mixtures, gated attention
  conditioners, variational dequantization, logit preprocessing).

Equal time: each run first times steps 11..30 of a calibration run, then trains ``budget /
(seconds per step)`` steps. ``--clock wall`` (the default) times them from its metrics log (no
setup, no evaluation): on a shared CPU the other jobs' load inflates it, so the step counts depend
on the load. ``--clock cpu`` counts this process's CPU seconds instead (after that run, which warms
up the process, two more of 10 and 30 steps: their difference over 20 steps), which the load moves
much less: on a quiet machine
with one thread the two clocks agree, so ``--clock cpu`` is the figure to compare on a loaded one.
The printed wall and CPU times (setup and the final evaluation included) say how close it came.
Prints test bits/dim per recipe: the mean over seeds of each run's mean over 5 noise draws (EMA
weights), and the spread over seeds (min..max). Targets (issue): Flow++-digits at least 0.03
bits/dim better than glow-digits; spline no worse than affine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_STEPS = 20


def recipes() -> dict[str, str]:
    """Spec texts by recipe name."""
    glow = (ROOT / "specs" / "glow-digits.yaml").read_text()
    mixlogistic = glow.replace("    transform: affine\n    scale: sigmoid\n",
                               "    transform: {kind: mixlogistic, components: 8}\n")
    assert mixlogistic != glow
    return {"affine": glow, "spline": (ROOT / "specs" / "glow-digits-spline.yaml").read_text(),
            "mixlogistic": mixlogistic, "flowpp": (ROOT / "specs" / "flowpp-digits.yaml").read_text()}


def run(name: str, text: str, seed: int, budget: float, data, scratch: Path,
        clock: str = "wall") -> tuple[float, float, int, float]:
    """(test bits/dim, mean of 5 draws; wall seconds of the budgeted run; steps; its CPU seconds)."""
    import flowspec
    from flowspec.train.config import TrainingConfig
    from flowspec.train.runner import evaluate_draws, train

    spec = flowspec.loads_spec(text, f"{name}.yaml")
    base = (spec.training or TrainingConfig()).model_dump()

    def config(steps: int) -> TrainingConfig:
        return TrainingConfig(**{**base, "steps": steps, "epochs": None, "seed": seed, "device": "cpu",
                                 "eval_every": max(steps, 1), "checkpoint_every": max(steps, 1),
                                 "sample_every": 10 ** 9, "warmup": min(base["warmup"], max(steps // 10, 1))})

    calibration = scratch / f"{name}-{seed}-calibrate"
    cpu = time.process_time()
    train(spec, data, config(10 + CALIBRATION_STEPS), calibration, progress=False)
    cpu = time.process_time() - cpu
    if clock == "cpu":  # warm now: runs of 10 and 30 steps, the difference is steps 11..30 without setup
        used = []
        for steps in (10, 10 + CALIBRATION_STEPS):
            cpu = time.process_time()
            train(spec, data, config(steps), scratch / f"{name}-{seed}-calibrate-{steps}", progress=False)
            used.append(time.process_time() - cpu)
        per_step = (used[1] - used[0]) / CALIBRATION_STEPS
    else:
        logged = {row["step"]: row["seconds"] for row in map(json.loads, (calibration / "metrics.jsonl").open())
                  if "seconds" in row}
        per_step = (logged[10 + CALIBRATION_STEPS] - logged[10]) / CALIBRATION_STEPS  # steps 11..30: no setup
    steps = max(int(budget / max(per_step, 1e-6)), CALIBRATION_STEPS)
    tic, cpu = time.perf_counter(), time.process_time()
    out = scratch / f"{name}-{seed}"
    train(spec, data, config(steps), out, progress=False)
    seconds, cpu = time.perf_counter() - tic, time.process_time() - cpu
    model = flowspec.load_model(out / "last.pt")  # EMA weights
    return evaluate_draws(model, data.test, draws=5).mean, seconds, steps, cpu


def equal_budget_runs(chosen: dict[str, str], seeds, budget: float, data, scratch: Path,
                      clock: str) -> dict[str, list[tuple[float, float, int, float]]]:
    """``run`` of every recipe for every seed, recipes alternating within a seed (so a change in the
    load hits them alike); each run's line printed as it ends."""
    results: dict[str, list[tuple[float, float, int, float]]] = {}
    for seed in seeds:
        for name, text in chosen.items():
            bpd, seconds, steps, cpu = run(name, text, seed, budget, data, scratch, clock)
            results.setdefault(name, []).append((bpd, seconds, steps, cpu))
            print(f"{name:15s} seed {seed}: test bits/dim {bpd:.4f} after {steps} steps in {seconds:.0f} s "
                  f"({cpu:.0f} CPU s)", flush=True)
    return results


def print_budget_table(results: dict[str, list[tuple[float, float, int, float]]], budget: float,
                       clock: str) -> dict[str, float]:
    """The mean and spread over seeds of each recipe's test bits/dim, its steps and seconds; returns
    the means."""
    seeds = max((len(rows) for rows in results.values()), default=0)
    print(f"\ntest bits/dim at {budget:.0f} {clock} s of training per run, {seeds} seeds (mean over "
          f"seeds of the mean of 5 noise draws; spread = min..max over seeds)")
    print(f"{'recipe':15s} {'mean':>8s} {'spread':>17s} {'steps':>8s} {'wall s':>8s} {'CPU s':>8s}")
    means = {}
    for name, rows in results.items():
        values = [r[0] for r in rows]
        means[name] = statistics.mean(values)
        print(f"{name:15s} {means[name]:8.4f} {min(values):8.4f}..{max(values):.4f} "
              f"{statistics.mean(r[2] for r in rows):8.0f} {statistics.mean(r[1] for r in rows):8.0f} "
              f"{statistics.mean(r[3] for r in rows):8.0f}")
    return means


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="wall-clock seconds of training per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="recipes to run (default: all)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="what the budget counts: wall seconds, or this process's CPU seconds (load-robust)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from flowspec.data import load_data

    data = load_data("digits", None, (1, 8, 8), 17)
    chosen = {k: v for k, v in recipes().items() if args.only is None or k in args.only}
    with tempfile.TemporaryDirectory(prefix="flowspec-couplings-") as scratch:
        results = equal_budget_runs(chosen, range(args.first_seed, args.first_seed + args.seeds), args.budget, data,
                                    Path(scratch), args.clock)
    means = print_budget_table(results, args.budget, args.clock)
    if "flowpp" in means and "affine" in means:
        gap = means["affine"] - means["flowpp"]
        print(f"flowpp vs glow-digits (affine): {gap:+.4f} bits/dim (target >= +0.03: {'met' if gap >= 0.03 else 'NOT met'})")
    if "spline" in means and "affine" in means:
        print(f"spline vs affine: {means['affine'] - means['spline']:+.4f} bits/dim (target >= 0: "
              f"{'met' if means['spline'] <= means['affine'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
