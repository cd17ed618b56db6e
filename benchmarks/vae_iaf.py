"""Does an IAF posterior tighten a VAE's bound? Digits VAE with 0 and 4 IAF steps, same budget.

    python benchmarks/vae_iaf.py                 # 2 x 5000 steps, about 2-3 minutes on one core
    python benchmarks/vae_iaf.py --steps 300     # quick look

Data: scikit-learn's bundled 8x8 digits (17 levels), a fixed split (seed 0: 1437 train, 360
test). Both models are ``specs/vae-iaf-digits.yaml`` with ``posterior.steps`` set to 0 or 4,
trained through the project's runner (:func:`flowspec.train.runner.train`, the code path of
``flowspec train``) with one and the same :class:`~flowspec.train.config.TrainingConfig`: the
spec's ``training:`` section with the command-line options on top and a cosine decay. With the
default options that is Adam, lr 2e-3 with 100 linear warm-up steps then cosine decay to 0, no
weight decay, gradient norm clipped at 50, no EMA, batch 64, 5000 steps, seed 0, on the CPU; the
runner's data order and noise are seeded per step. The run folders go to a temporary directory,
removed at the end.

Prints, on the test split, the negative ELBO (mean of ``samples`` draws per example,
:func:`flowspec.train.runner.evaluate_draws`) and the importance-weighted NLL (``k`` draws, Burda
et al. 2016), both in bits/dim, plus the wall time of the run (training plus the runner's final
evaluation, checkpoint and sample grid). Kingma et al. 2016 (arXiv:1606.04934) report that IAF
tightens the bound on MNIST; this prints what we measure here.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import flowspec
from flowspec.data import DataSplit
from flowspec.train.config import TrainingConfig, override
from flowspec.train.runner import evaluate, evaluate_draws, train

SPEC = Path(__file__).resolve().parent.parent / "specs" / "vae-iaf-digits.yaml"


def digits_split(seed: int = 0) -> DataSplit:
    """The digits as levels 0..16, ``(N, 1, 8, 8)``, split 80/20 by a permutation seeded with ``seed``."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1)  # levels 0..16
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(images))
    return DataSplit("digits", images[order[:cut]], images[order[cut:]], levels=17)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--iaf", type=int, nargs="+", default=[0, 4], help="IAF step counts to compare")
    parser.add_argument("--samples", type=int, default=16, help="draws per example for the ELBO")
    parser.add_argument("-k", type=int, default=256, help="draws per example for the IW bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = digits_split()
    base = flowspec.load_spec(SPEC)
    config = override(base.training or TrainingConfig(), steps=args.steps, batch_size=args.batch, lr=args.lr,
                      seed=args.seed, lr_decay="cosine", device="cpu", eval_every=args.steps,
                      checkpoint_every=args.steps, sample_every=args.steps)
    print(f"digits 8x8, 17 levels: {len(data.train)} train / {len(data.test)} test; {config.steps} steps of "
          f"{config.batch_size} through flowspec.train ({config.optimizer}, lr {config.lr:g}, warm-up "
          f"{config.warmup}, decay {config.lr_decay}, weight decay {config.weight_decay:g}, clip {config.grad_clip:g}, "
          f"EMA {config.ema if config.ema is not None else 'off'}), seed {config.seed}, {args.threads} thread(s)")
    print(f"{'IAF steps':>9} {'params':>8} {'train s':>8} {'test -ELBO bpd':>15} {f'test IW NLL bpd (k={args.k})':>26} "
          f"{'gap nats/img':>13}")
    with tempfile.TemporaryDirectory(prefix="flowspec-vae-bench-") as folder:
        for steps in args.iaf:
            spec = base.model_copy(update={"posterior": base.posterior.model_copy(update={"steps": steps})})
            out = Path(folder) / f"iaf{steps}"
            tic = time.perf_counter()
            train(spec, data, config, out, progress=False)
            seconds = time.perf_counter() - tic
            model = flowspec.load_model(out / "last.pt")
            neg_elbo = evaluate_draws(model, data.test, args.samples, batch_size=60, seed=1234).mean
            iw = evaluate(model, data.test, batch_size=60, k=args.k, seed=1234)
            gap = (neg_elbo - iw) * model.dims * math.log(2)
            params = sum(p.numel() for p in model.parameters())
            print(f"{steps:>9} {params:>8,} {seconds:>8.1f} {neg_elbo:>15.4f} {iw:>26.4f} {gap:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
