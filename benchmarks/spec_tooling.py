"""Benchmark: the spec tools (validate, expand, render --detail paper) against importing torch.

    python benchmarks/spec_tooling.py                 # 5 rounds
    python benchmarks/spec_tooling.py --repeats 9

Target: ``flowspec validate``, ``flowspec expand`` and ``flowspec render --detail paper`` on
``specs/glow.yaml`` (44M parameters) and on a 100M-parameter Glow (the same spec with
``--set step[2].conditioner.hidden=848``) each take at most 1.2x the time of
``python -c "import torch"``: the tools compute nothing that grows with the weights, so what is
left is the interpreter and its imports. Each round runs every command once as a fresh process,
interleaved with the baseline, so a load that comes and goes hits all of them alike. Printed per
command: the median wall time and CPU time (user + sys of the process and its children, e.g.
Graphviz's ``dot``) over the rounds, and both as ratios to the baseline's medians. On a shared
machine the wall times are noisy; the CPU times are the steadier figure.

Python's bytecode cache is on for every process (in a temporary ``PYTHONPYCACHEPREFIX``, filled by
one untimed round), as on a user's machine: with ``PYTHONDONTWRITEBYTECODE`` set, flowspec's own
modules would be compiled from source on every start while torch's come from its installed cache.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOW = str(ROOT / "specs" / "glow.yaml")
WIDE = ["--set", "step[2].conditioner.hidden=848"]  # Glow at 100M parameters
TARGET = 1.2


def _run(command: list[str], env: dict) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _params(env: dict, extra: list[str]) -> int:
    import json

    out = subprocess.run([sys.executable, "-m", "flowspec", "report", GLOW, "--format", "json", *extra],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["params"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (medians are printed)")
    args = parser.parse_args()
    flowspec = [sys.executable, "-m", "flowspec"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
        svg = str(Path(tmp) / "paper.svg")
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
        }
        for label, extra in (("glow.yaml", []), ("glow.yaml 100M", WIDE)):
            commands[f"validate {label}"] = flowspec + ["validate", GLOW, *extra]
            commands[f"expand {label}"] = flowspec + ["expand", GLOW, *extra]
            commands[f"render --detail paper {label}"] = flowspec + ["render", GLOW, "-o", svg, "--detail", "paper", *extra]
        print(f"parameters: glow.yaml {_params(env, []):,}; glow.yaml {' '.join(WIDE)} {_params(env, WIDE):,}")
        for command in commands.values():  # untimed: fills the bytecode cache
            _run(command, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(_run(command, env))
    baseline = 'python -c "import torch"'
    base_wall = statistics.median(w for w, _ in times[baseline])
    base_cpu = statistics.median(c for _, c in times[baseline])
    print(f"{args.repeats} rounds, medians; ratio = command / import torch (target <= {TARGET})")
    print(f"{'command':<38} {'wall s':>7} {'ratio':>6} {'cpu s':>7} {'ratio':>6}")
    worst = 0.0
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        worst = max(worst, cpu / base_cpu) if name != baseline else worst
        print(f"{name:<38} {wall:7.2f} {wall / base_wall:6.2f} {cpu:7.2f} {cpu / base_cpu:6.2f}")
    print(f"largest cpu ratio {worst:.2f}: {'meets' if worst <= TARGET else 'misses'} the {TARGET}x target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
