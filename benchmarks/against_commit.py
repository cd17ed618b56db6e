"""Training and sampling throughput of this tree against another commit, alternating in one run:
``python benchmarks/against_commit.py [--ref HEAD~1] [--rounds 5]``.

The other commit is checked out into a temporary git worktree; each round runs one child process
per tree (the same spec file, ``specs/glow-bench.yaml`` by default, batch 16, 1 thread), which
times plain training steps (Adam, bits/dim loss) and no-grad sampling and prints the best of
``--repeats``. Rounds alternate the trees so that load on a shared machine falls on both; the
medians over rounds and their ratio (this tree / ref) are printed side by side.

``--runner`` times the training runner itself instead (``flowspec.train.runner.train``: batches,
the step object, clipping, EMA, metrics): ``--steps`` steps of the spec (give a digits-shaped one,
e.g. ``specs/glow-digits.yaml``) on the bundled digits, batch ``--batch``, and its steps/s from the
run's own ``metrics.jsonl`` between step 10 and the last (evaluation and checkpoints fall outside).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, sys, time, torch
import flowspec
torch.set_num_threads(1)
torch.manual_seed(0)
spec_path, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = flowspec.compile(flowspec.load_spec(spec_path))
levels = model.levels
x = torch.randint(0, levels, (batch, *model.input_shape)).float()
model.initialize(x)
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
def step():
    optimizer.zero_grad(set_to_none=True)
    model.bits_per_dim(x).mean().backward()
    optimizer.step()
def best(fn):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return min(times)
train = batch / best(step)
model.eval()
with torch.no_grad():
    sample = batch / best(lambda: model.sample(batch, temperature=0.7))
print(json.dumps({"train": train, "sample": sample}))
"""
RUNNER_CHILD = r"""
import json, sys, tempfile, torch
import flowspec
from flowspec.data import load_data
from flowspec.train.config import TrainingConfig
from flowspec.train.runner import train
torch.set_num_threads(1)
spec_path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = flowspec.load_spec(spec_path)
data = load_data("digits", None, tuple(spec.input.shape), spec.input.levels)
config = TrainingConfig(steps=steps, batch_size=batch, eval_every=10 ** 6, checkpoint_every=10 ** 6,
                        sample_every=10 ** 6, device="cpu")
with tempfile.TemporaryDirectory() as out:
    train(spec, data, config, out + "/run", progress=False, log=lambda line: None)
    rows = [json.loads(line) for line in open(out + "/run/metrics.jsonl")]
seconds = {row["step"]: row["seconds"] for row in rows if "seconds" in row}
print(json.dumps({"train": (steps - 10) / (seconds[steps] - seconds[10])}))
"""


def run(tree: Path, spec: str, batch: int, repeats: int, runner_steps: int | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    child, last = (CHILD, repeats) if runner_steps is None else (RUNNER_CHILD, runner_steps)
    out = subprocess.run([sys.executable, "-c", child, spec, str(batch), str(last)], env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD~1")
    parser.add_argument("--spec", default=str(ROOT / "specs" / "glow-bench.yaml"))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runner", action="store_true", help="time the training runner's steps/s instead")
    parser.add_argument("--steps", type=int, default=60, help="--runner: steps per run (>= 20)")
    args = parser.parse_args()
    if args.runner and args.steps < 20:
        parser.error("--steps: at least 20 (the rate is read between step 10 and the last)")
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), args.ref], check=True)
        try:
            results = {"this tree": [], args.ref: []}
            for round_ in range(args.rounds):
                trees = [("this tree", ROOT), (args.ref, other)]
                for name, tree in trees if round_ % 2 == 0 else trees[::-1]:
                    results[name].append(run(tree, args.spec, args.batch, args.repeats,
                                             args.steps if args.runner else None))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=True)
    what_runs = f"the runner, {args.steps} steps" if args.runner else "plain steps and sampling"
    print(f"{Path(args.spec).name}, batch {args.batch}, 1 thread, {what_runs}, {args.rounds} alternating rounds "
          f"(medians)")
    print(f"{'':14}{'this tree':>12}{args.ref:>14}{'ratio':>8}")
    for what in ("train",) if args.runner else ("train", "sample"):
        mine = statistics.median(r[what] for r in results["this tree"])
        theirs = statistics.median(r[what] for r in results[args.ref])
        unit = "steps/s" if args.runner else "img/s"
        print(f"{what + ' ' + unit:14}{mine:12.2f}{theirs:14.2f}{mine / theirs:8.3f}")


if __name__ == "__main__":
    main()
