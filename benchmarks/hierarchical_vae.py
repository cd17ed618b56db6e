"""Does a hierarchical IAF-VAE beat a flat one on digits, and does IAF help it? (Kingma et al. 2016,
arXiv:1606.04934, sec. 6 and table 2's ablation.)

    python benchmarks/hierarchical_vae.py                      # 2 seeds x 120 s per model
    python benchmarks/hierarchical_vae.py --budget 30 --seeds 0   # quick look
    OMP_NUM_THREADS=1 python benchmarks/hierarchical_vae.py --clock cpu   # on a loaded machine

Contestants, each trained for the same budget of its own step time (wall or CPU seconds):
  flat+iaf   specs/vae-iaf-digits.yaml (one latent vector, 4 IAF steps)
  hvae       specs/iaf-vae-digits.yaml with posterior.kind: diagonal (no IAF)
  hvae+iaf   specs/iaf-vae-digits.yaml (one IAF step per latent layer)
  hvae+iaf kl_min=0   the same without free bits (for the active-channel count)
  flat+iaf ema=D   the flat VAE with the hierarchical spec's EMA decay D, when that spec has one and
             the flat spec does not (tells the hierarchy's gain from the averaging's)

The contestants of one seed train interleaved, one step each in turn, until each has spent
``--budget`` seconds in its own steps (so a load change on a shared machine hits them all alike;
``--clock cpu`` counts the process's CPU seconds of each step instead of wall seconds, which with
one thread is the same figure on a quiet machine and the fair one on a loaded machine),
from the same seed, on the same batches (the bundled digits' fixed split: 1497 train, 300 test),
each trained as ``flowspec train`` trains its spec, with the trainer's own optimizer, step and EMA
and the whole of the spec's ``training:`` section (optimizer, lr, warm-up, weight decay, gradient
clipping, EMA; flat: Adam 2e-3, no EMA; hierarchical: Adamax, the paper's optimizer, and its EMA),
one CPU thread, and scored with the weights the spec evaluates (the EMA's when it has one). Each
model's data-dependent init sees the same first batch; ``--only`` trains a subset.

Prints on the test split: -ELBO (mean of ``--draws`` one-draw evaluations) and the importance-
weighted NLL (``-k`` draws, Burda et al. 2016), both bits/dim, per seed and as mean and spread
(standard deviation over seeds); for the hierarchical models, active latent channels: channels
whose test KL (one draw, summed over the channel's pixels, averaged over images) exceeds
``--active`` nats.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from functools import partial
from pathlib import Path

import torch

import flowspec
from flowspec.data.bundled import load_digits
from flowspec.train.ema import EMA
from flowspec.train.evaluate import evaluate, evaluate_draws, per_dim_loss
from flowspec.train.step import TrainStep, build_optimizer

ROOT = Path(__file__).resolve().parent.parent
FLAT = ROOT / "specs" / "vae-iaf-digits.yaml"
HIERARCHICAL = ROOT / "specs" / "iaf-vae-digits.yaml"


def contestants() -> dict[str, object]:
    """The flat VAE as shipped, the hierarchical one without and with IAF and without free bits;
    when the hierarchical spec averages its weights (``training.ema``) and the flat one does not,
    also the flat VAE with the same EMA, so that the gap can be told apart from the averaging."""
    flat, hvae = flowspec.load_spec(FLAT), flowspec.load_spec(HIERARCHICAL)
    diagonal = hvae.model_copy(update={"posterior": hvae.posterior.model_copy(update={"kind": "diagonal"})})
    out = {"flat+iaf": flat, "hvae": diagonal, "hvae+iaf": hvae,
           "hvae+iaf kl_min=0": hvae.model_copy(update={"kl_min": 0.0})}
    decay = hvae.training.ema
    if decay is not None and flat.training.ema != decay:
        averaged = flat.model_copy(update={"training": flat.training.model_copy(update={"ema": decay})})
        out = {"flat+iaf": flat, f"flat+iaf ema={decay:g}": averaged, **{k: v for k, v in out.items() if k != "flat+iaf"}}
    return out


class Run:
    """One contestant trained as ``flowspec train`` trains its spec: the optimizer, lr, warm-up,
    weight decay, gradient clipping and EMA of its ``training:`` section
    (:func:`~flowspec.train.step.build_optimizer`, :class:`~flowspec.train.step.TrainStep`,
    :class:`~flowspec.train.ema.EMA`), timed by ``clock``."""

    def __init__(self, spec, first_batch: torch.Tensor, clock: str = "wall", batches_per_epoch: int = 1):
        self.clock = time.process_time if clock == "cpu" else time.perf_counter
        self.config = config = spec.training
        self.model = flowspec.compile(spec)
        self.model.initialize(first_batch)
        self.model.train()
        optimizer = build_optimizer(self.model, config, batches_per_epoch)
        decay = config.polyak_decay(batches_per_epoch)
        self.ema = EMA(self.model, decay) if decay is not None else None  # its shadow starts after the init
        self.train_step = TrainStep(self.model, partial(per_dim_loss, self.model), optimizer, ema=self.ema,
                                    grad_clip=config.grad_clip, device=torch.device("cpu"))
        self.total = config.total_steps(batches_per_epoch)
        self.seconds, self.steps = 0.0, 0

    def step(self, x: torch.Tensor) -> None:
        tic = self.clock()
        self.train_step.set_lr(self.config.lr * self.config.lr_factor(self.steps, self.total))
        self.train_step(x, None, False)
        self.steps += 1
        self.seconds += self.clock() - tic

    def evaluated(self):
        """A context whose model is the one evaluated: the EMA weights when the spec averages them."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext(self.model)


def train_interleaved(specs: dict, train: torch.Tensor, budget: float, batch: int, seed: int,
                      clock: str = "wall") -> dict[str, Run]:
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    first = train[torch.randperm(len(train), generator=order)[:batch]]
    runs = {}
    for name, spec in specs.items():
        torch.manual_seed(seed)
        runs[name] = Run(spec, first, clock, len(train) // batch)
    batches, position = torch.randperm(len(train), generator=order), 0
    while any(run.seconds < budget for run in runs.values()):
        if position + batch > len(train):
            batches, position = torch.randperm(len(train), generator=order), 0
        x = train[batches[position:position + batch]]
        position += batch
        for run in runs.values():
            if run.seconds < budget:
                run.step(x)
    return runs


def score(run: Run, test: torch.Tensor, draws: int, k: int, threshold: float) -> tuple[float, float, str]:
    """Test -ELBO (mean of ``draws`` one-draw evaluations), IW NLL with ``k`` draws (bits/dim) and,
    for a hierarchical model, its active channels (test KL above ``threshold`` nats), all with the
    weights the spec evaluates (EMA when it has one)."""
    with run.evaluated() as model:
        model.eval()
        neg_elbo = evaluate_draws(model, test, draws, batch_size=100, seed=1234).mean
        iw = evaluate(model, test, batch_size=100 if k <= 64 else 20, k=k, seed=1234)
        active = ""
        if hasattr(model, "channel_kl"):
            with torch.no_grad():
                torch.manual_seed(1234)
                kl = model.channel_kl(test)
            per_layer = (kl > threshold).sum(1).tolist()
            active = f"{int(sum(per_layer))}/{kl.numel()} {per_layer} min {kl.min().item():.3g}"
        model.train()
    return neg_elbo, iw, active


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--draws", type=int, default=8, help="one-draw evaluations averaged for the -ELBO")
    parser.add_argument("-k", type=int, default=256, help="draws per example for the IW NLL")
    parser.add_argument("--active", type=float, default=0.05, help="nats of KL that make a channel active")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="train only these contestants (a quick look)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="what the budget counts: wall seconds, or this process's CPU seconds (loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_digits()
    train, test = data.train.float(), data.test.float()
    specs = contestants()
    if args.only:
        unknown = sorted(set(args.only) - set(specs))
        if unknown:
            parser.error(f"--only: unknown contestant(s) {unknown}; choose from {list(specs)}")
        specs = {name: spec for name, spec in specs.items() if name in args.only}
    print(f"digits 8x8, 17 levels: {len(train)} train / {len(test)} test; {args.budget:g} {args.clock} s of training per model, "
          f"batch {args.batch}, seeds {args.seeds}, {args.threads} thread(s); -ELBO over {args.draws} draws, "
          f"IW NLL k={args.k}")
    print(f"{'model':<20} {'seed':>4} {'params':>8} {'steps':>6} {'test -ELBO bpd':>15} {f'IW NLL k={args.k}':>13} "
          f"{'active channels (KL nats)':>16}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in specs}
    for seed in args.seeds:
        runs = train_interleaved(specs, train, args.budget, args.batch, seed, args.clock)
        for name, run in runs.items():
            neg_elbo, iw, active = score(run, test, args.draws, args.k, args.active)
            results[name].append((neg_elbo, iw))
            params = sum(p.numel() for p in run.model.parameters())
            print(f"{name:<20} {seed:>4} {params:>8,} {run.steps:>6} {neg_elbo:>15.4f} {iw:>13.4f} {active:>16}",
                  flush=True)
    print("\nmean (standard deviation over seeds), bits/dim")
    spread = lambda values: statistics.stdev(values) if len(values) > 1 else float("nan")  # noqa: E731
    means = {}
    for name, values in results.items():
        elbos, iws = [v[0] for v in values], [v[1] for v in values]
        means[name] = statistics.fmean(iws)
        print(f"{name:<20} -ELBO {statistics.fmean(elbos):.4f} ({spread(elbos):.4f})   IW NLL {means[name]:.4f} "
              f"({spread(iws):.4f})")
    if "flat+iaf" in means and "hvae+iaf" in means:
        print(f"\nIW NLL, flat+iaf - hvae+iaf: {means['flat+iaf'] - means['hvae+iaf']:+.4f} bits/dim (target >= +0.05)")
    for name, mean in means.items():
        if name.startswith("flat+iaf ema") and "hvae+iaf" in means:
            print(f"IW NLL, {name} - hvae+iaf: {mean - means['hvae+iaf']:+.4f} bits/dim (the gap with both averaged)")
    if "hvae" in means and "hvae+iaf" in means:
        print(f"IW NLL, hvae - hvae+iaf:     {means['hvae'] - means['hvae+iaf']:+.4f} bits/dim (IAF helps when > 0)")


if __name__ == "__main__":
    main()
