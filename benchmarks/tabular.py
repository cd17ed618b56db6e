"""Benchmark: density estimation on tables that ship in installable packages, flowspec against nflows
and zuko at the same depth, width and step budget.

Tables (each standardized with its train split's mean and std; a seeded 80/20 split):
- ``wine`` (scikit-learn, 178 x 13), ``breast-cancer`` (scikit-learn, 569 x 30), ``diabetes``
  (scikit-learn, 442 x 11: the ten features and the progression), ``star98`` (statsmodels, 303 x 22),
  ``macrodata`` (statsmodels, 203 x 12: the quarterly series without year and quarter);
- ``patches``: BSDS300-style 8x8 patches cut at seeded random places from scikit-learn's two sample
  photos, made as the MAF paper made BSDS300's (Papamakarios et al. 2017, sec. 4.2): grey levels plus
  uniform noise, scaled by 1/256, each patch minus its mean, the last pixel dropped (63 dims).

Contestants, all unconditional with a standard normal base, ``--layers`` autoregressive layers whose
MADE has two hidden layers of ``--hidden`` units, orders reversed between layers:
- MAF (affine): flowspec's ``maf`` layer, nflows' ``MaskedAffineAutoregressiveTransform`` with
  ``ReversePermutation``, zuko's ``flows.MAF``;
- NSF (rational-quadratic spline, 8 bins, autoregressive, identity outside ``[-B, B]`` with ``B =
  --bound``, 5 by default, zuko's default): flowspec's ``maf`` with ``transform: spline``, nflows'
  ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` (linear tails at B), zuko's ``flows.NSF``
  (a ``flows.MAF`` of ``MonotonicRQSTransform(bound=B)``, as ``flows.NSF`` builds it, so B can be set).
Each library keeps its own parametrisation of the transform, its MADE's initialisation and activation
(flowspec's defaults: ELU, the input layer over each unit's kept fan-in, the affine shift ``t = 3 h_t``;
``--activation``, ``--init`` and ``--shift-gain`` change them; nflows and zuko ReLU and all inputs'
fan-in). Every run: Adam at ``--lr``,
``--steps`` steps at batch ``--batch`` from a seeded shuffle, one thread; the test figure of the last
step's model. Seeds run in turn, and within a seed the contestants alternate, so the shared CPU's
load falls on each alike.

Printed per table and family: test nats/dim (mean over ``--seeds`` seeds +- its standard error) and the
mean training-step time (``--clock``: the process's CPU time by default, which other jobs on a shared
machine inflate less than the wall clock, ``wall`` for that); then the issue's targets: flowspec as
good as the better peer (difference within one combined standard error, ``sqrt(se_a^2 + se_b^2)``, or
better) on every table, better by more than one on at least three, and a step time no slower than the
faster peer's.

Caveat: diabetes (sex, age) and star98 (counts) hold integer-valued and binary columns, modelled here as
continuous as the peers' examples do; a continuous density can spike on such values, so their figures
reward spikes as much as fit (``specs/diabetes-mixed.yaml`` types those columns instead).

    python benchmarks/tabular.py                         # defaults: 5 seeds, 300 steps, 6 tables
    python benchmarks/tabular.py --tables wine patches --seeds 3 --steps 200
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import types

import numpy as np
import torch

TABLES = ("wine", "breast-cancer", "diabetes", "star98", "macrodata", "patches")
SPLIT_SEED = 1234


def _split(table: np.ndarray, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded 80/20 split, standardized with the train split's statistics (float32)."""
    order = np.random.default_rng(seed).permutation(len(table))
    test = order[: len(table) // 5]
    train = order[len(table) // 5:]
    mean, std = table[train].mean(0), table[train].std(0)
    std[std == 0] = 1.0
    scale = lambda rows: torch.tensor((table[rows] - mean) / std, dtype=torch.float32)  # noqa: E731
    return scale(train), scale(test)


def patches(count: int = 4000, seed: int = 0) -> np.ndarray:
    """8x8 grey patches of scikit-learn's sample photos, as BSDS300's: dequantized, /256, minus the
    patch mean, the last pixel dropped."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    greys = [image.astype(np.float64).mean(2).round() for image in load_sample_images().images]
    out = np.empty((count, 64))
    for i in range(count):
        grey = greys[i % len(greys)]
        r, c = rng.integers(0, grey.shape[0] - 8), rng.integers(0, grey.shape[1] - 8)
        out[i] = grey[r:r + 8, c:c + 8].reshape(64)
    out = (out + rng.uniform(size=out.shape)) / 256.0
    out -= out.mean(1, keepdims=True)
    return out[:, :63]


def load_table(name: str) -> np.ndarray:
    if name == "wine":
        from sklearn.datasets import load_wine
        return load_wine().data
    if name == "breast-cancer":
        from sklearn.datasets import load_breast_cancer
        return load_breast_cancer().data
    if name == "diabetes":
        from sklearn.datasets import load_diabetes
        bunch = load_diabetes()
        return np.concatenate([bunch.data, bunch.target[:, None]], axis=1)
    if name == "star98":
        import statsmodels.api as sm
        return sm.datasets.star98.load_pandas().data.to_numpy(dtype=np.float64)
    if name == "macrodata":
        import statsmodels.api as sm
        return sm.datasets.macrodata.load_pandas().data.drop(columns=["year", "quarter"]).to_numpy(dtype=np.float64)
    if name == "patches":
        return patches()
    raise ValueError(name)


# -- contestants -----------------------------------------------------------------------------------

def flowspec_flow(features: int, layers: int, hidden: int, spline: bool, bound: float, activation: str = "elu",
                  init: str = "input", shift_gain: float = 3.0):
    """flowspec's ``maf`` rows with its defaults (``activation``, ``init``, ``shift_gain`` as given)."""
    import flowspec

    options = f", transform: {{kind: spline, bins: 8, bound: {bound}}}" if spline else ""
    if not spline and shift_gain != 3.0:
        options += f", transform: {{kind: affine, scale: exp, shift_gain: {shift_gain}}}"
    options += f", activation: {activation}" if activation != "elu" else ""
    options += f", init: {init}" if init != "input" else ""
    rows = "\n".join(f"  - {{kind: maf, hidden: {hidden}, depth: 2, order: {'natural' if i % 2 == 0 else 'reversed'}"
                     f"{options}}}" for i in range(layers))
    model = flowspec.compile(flowspec.loads_spec(
        f"input: {{shape: [{features}], data: continuous}}\nprior: standard\nlayers:\n{rows}\n"))
    return model, lambda x: -model.log_prob(x)


def zuko_flow(features: int, layers: int, hidden: int, spline: bool, bound: float):
    import functools

    import zuko

    options = {}
    if spline:  # what zuko.flows.NSF(bins=8) passes to flows.MAF, the bound made explicit
        options = {"univariate": functools.partial(zuko.transforms.MonotonicRQSTransform, bound=bound, slope=1e-3),
                   "shapes": [(8,), (8,), (7,)]}
    flow = zuko.flows.MAF(features=features, transforms=layers, hidden_features=[hidden, hidden], **options)
    return flow, lambda x: -flow().log_prob(x)


def nflows_flow(features: int, layers: int, hidden: int, spline: bool, bound: float):
    """nflows' MADE: an initial masked layer and ``num_blocks`` more hidden layers (1: two in all)."""
    if "matplotlib" not in sys.modules:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # nflows imports pyplot for a plotting helper it never calls here
            stub = types.ModuleType("matplotlib")
            stub.pyplot = types.ModuleType("matplotlib.pyplot")
            sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = stub, stub.pyplot
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import (MaskedAffineAutoregressiveTransform,
                                                  MaskedPiecewiseRationalQuadraticAutoregressiveTransform)
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    parts = []
    for i in range(layers):
        if i:
            parts.append(ReversePermutation(features))
        if spline:
            parts.append(MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features, hidden, num_bins=8, tails="linear", tail_bound=bound, num_blocks=1,
                use_residual_blocks=False))
        else:
            parts.append(MaskedAffineAutoregressiveTransform(features, hidden, num_blocks=1, use_residual_blocks=False))
    flow = Flow(CompositeTransform(parts), StandardNormal([features]))
    return flow, lambda x: -flow.log_prob(x)


LIBRARIES = {"flowspec": flowspec_flow, "nflows": nflows_flow, "zuko": zuko_flow}


def run(build, train: torch.Tensor, test: torch.Tensor, args, seed: int, spline: bool) -> tuple[float, float]:
    """(test nats/dim, seconds per training step)."""
    torch.manual_seed(seed)
    ours = build is flowspec_flow
    options = {"activation": args.activation, "init": args.init, "shift_gain": args.shift_gain} if ours else {}
    model, nll = build(train.shape[1], args.layers, args.hidden, spline, args.bound, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(seed)
    epochs = args.steps * args.batch // len(train) + 2
    order = torch.cat([torch.randperm(len(train), generator=generator) for _ in range(epochs)])
    model.train()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    tic = clock()
    for step in range(args.steps):
        loss = nll(train[order[step * args.batch:(step + 1) * args.batch]]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    per_step = (clock() - tic) / args.steps
    model.eval()
    with torch.no_grad():
        return float(nll(test).double().mean()) / train.shape[1], per_step


def mean_se(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return math.inf, math.inf
    return statistics.fmean(values), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--families", nargs="+", choices=("maf", "nsf"), default=["maf", "nsf"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bound", type=float, default=5.0, help="NSF: the spline's interval [-B, B] in every library")
    parser.add_argument("--activation", choices=("elu", "relu", "gelu", "tanh"), default="elu",
                        help="flowspec's MADE activation (its default: elu); the peers keep their ReLU")
    parser.add_argument("--init", choices=("input", "masked", "dense"), default="input",
                        help="flowspec's MADE initialisation (its default: input, the input layer over each unit's "
                             "kept fan-in; masked: every layer so; dense: over all inputs)")
    parser.add_argument("--shift-gain", type=float, default=3.0,
                        help="MAF: flowspec's affine shift gain k, t = k h_t (its default: 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="step time as this process's CPU time (default: what the shared machine's load "
                             "inflates least) or as wall-clock time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.layers} layers, MADE 2 x {args.hidden}, NSF bound {args.bound}, flowspec activation "
          f"{args.activation}, init {args.init} and MAF shift gain {args.shift_gain:g}, {args.steps} Adam steps "
          f"(lr {args.lr}) at batch {args.batch}, {args.seeds} seeds, "
          f"{args.threads} thread(s), {args.clock} clock; test nats/dim (lower is better) +- s.e. over seeds",
          flush=True)
    verdicts = []
    for table in args.tables:
        train, test = _split(load_table(table))
        print(f"\n{table}: {len(train)} train / {len(test)} test, {train.shape[1]} dims", flush=True)
        for family in args.families:
            spline = family == "nsf"
            runs = {name: [] for name in LIBRARIES}
            for s in range(args.seeds):
                names = list(LIBRARIES)
                names = names[s % len(names):] + names[:s % len(names)]  # rotate who runs first
                for name in names:
                    runs[name].append(run(LIBRARIES[name], train, test, args, s, spline))
            stats = {}
            for name, results in runs.items():
                nats, se = mean_se([r[0] for r in results])
                step = statistics.fmean(r[1] for r in results)
                stats[name] = (nats, se, step)
                print(f"  {family.upper():3s} {name:9s} {nats:8.4f} +- {se:.4f}   {1e3 * step:6.2f} ms/step", flush=True)
            ours = stats["flowspec"]
            best = min(("nflows", "zuko"), key=lambda k: stats[k][0])
            fastest = min(("nflows", "zuko"), key=lambda k: stats[k][2])
            combined = math.hypot(ours[1], stats[best][1])
            difference = ours[0] - stats[best][0]
            verdicts.append((table, family, difference, combined, ours[2] / stats[fastest][2]))
            print(f"  {family.upper():3s} flowspec - best peer ({best}) = {difference:+.4f} nats/dim "
                  f"(combined s.e. {combined:.4f}); step time {ours[2] / stats[fastest][2]:.2f}x the faster peer "
                  f"({fastest})", flush=True)
    print("\ntargets (per family):")
    for family in args.families:
        rows = [v for v in verdicts if v[1] == family]
        as_good = [t for t, _, d, se, _ in rows if d <= se]
        better = [t for t, _, d, se, _ in rows if d < -se]
        ratios = [r for *_, r in rows]
        print(f"  {family.upper()}: as good as the better peer on {len(as_good)}/{len(rows)} tables "
              f"({'met' if len(as_good) == len(rows) else 'NOT met'}); better by > 1 s.e. on {len(better)} "
              f"({', '.join(better) or 'none'}; {'met' if len(better) >= 3 else 'NOT met'}, target >= 3); step time "
              f"{min(ratios):.2f}x..{max(ratios):.2f}x the faster peer "
              f"({'met' if max(ratios) <= 1.0 else 'NOT met'} on every table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
