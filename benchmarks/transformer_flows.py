"""Benchmark: transformer flows (TarFlow) on the bundled 8x8 digits, one command, figures side by side.

    python benchmarks/transformer_flows.py                        # 300 s per run, 3 seeds, one thread
    python benchmarks/transformer_flows.py --budget 60 --seeds 2 --clock cpu   # a loaded machine
    python benchmarks/transformer_flows.py --sections digits --only tarflow-digits --first-seed 1 --seeds 1

Sections (targets from the issue in brackets):

1. test bits/dim at the equal wall-clock budget of ``benchmarks/couplings_digits.py`` (its ``run``:
   each recipe's own training section, steps set by the budget after a calibration run; the same
   seeds, each run's mean over 5 noise draws of the test set, EMA weights): tarflow-digits beside
   glow-digits and flowpp-digits, and jet-digits when ``specs/jet-digits.yaml`` exists
   [tarflow-digits <= 2.10];
2. sampling the trained tarflow-digits (``n`` samples, float32): the KV-cached decoder against
   recomputing the prefix for every token (time, best of ``--repeats`` alternating runs, and the
   largest difference of the samples) [cached >= 4x faster, max difference <= 1e-5]; Jacobi
   decoding's time, passes and distance to the sequential samples;
3. classifier-free guidance: tarflow-digits-cond trained for the steps tarflow-digits took at the
   budget (seed 0; its test bits/dim given the labels printed), 100 samples per class
   at guidance 0, 1 and 2 classified by a scikit-learn SVC fitted on the digits train split (its
   accuracy on the test split printed beside) [>= 95% at the best weight];
4. the denoiser: tarflow-digits trained with noise augmentation (``training.noise: 0.05``) for the
   same steps; its test bits/dim, and how far its samples are from the nearest training image before
   and after ``FlowModel.denoise`` (``x + sigma^2 grad log p(x)``).

``--sections`` runs some of them (those after the first train tarflow-digits at the budget first).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from couplings_digits import equal_budget_runs, print_budget_table, run  # noqa: E402  (the equal-budget runs)


def recipes() -> dict[str, str]:
    """Spec texts by recipe name: the transformer flows and the coupling flows they stand beside."""
    names = ["tarflow-digits", "glow-digits", "flowpp-digits"]
    if (ROOT / "specs" / "jet-digits.yaml").exists():
        names.insert(1, "jet-digits")
    return {name: (ROOT / "specs" / f"{name}.yaml").read_text() for name in names}


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def sampling_section(model, n: int, repeats: int, temperature: float) -> None:
    """Cached vs recompute vs Jacobi on the same latents: the same blocks decoded three ways."""
    blocks = [layer for layer in model.layers if hasattr(layer, "decode_with")]
    eps = [torch.randn(n, *shape, generator=torch.Generator().manual_seed(0)) for shape in model.latent_shapes]

    def decode(sampling: str) -> torch.Tensor:
        for block in blocks:
            block.sampling = sampling
        with torch.no_grad():
            return model.generate(eps, temperature)

    timings: dict[str, list[float]] = {"cached": [], "recompute": [], "jacobi": []}
    samples = {}
    for _ in range(repeats):  # alternating, so a change in the machine's load hits each alike
        for sampling in timings:
            tic = time.perf_counter()
            samples[sampling] = decode(sampling)
            timings[sampling].append(time.perf_counter() - tic)
    passes = sum(block.last_iterations for block in blocks)
    for block in blocks:
        block.sampling = "cached"
    cached, recompute, jacobi = (min(timings[s]) for s in ("cached", "recompute", "jacobi"))
    tokens = model.latent_shapes[-1][0]
    difference = (samples["cached"] - samples["recompute"]).abs().max().item()
    jacobi_distance = (samples["jacobi"] - samples["recompute"]).abs().max().item()
    levels_differ = (model.to_data_space(samples["jacobi"]) != model.to_data_space(samples["recompute"])).float().mean()
    print(f"\nsampling {n} digits (float32, {len(blocks)} blocks of {tokens} tokens, temperature {temperature}), "
          f"best of {repeats} alternating runs:")
    print(f"  recompute the prefix per token: {recompute:8.3f} s")
    print(f"  KV cache, one token at a time:  {cached:8.3f} s   {recompute / cached:5.2f}x faster "
          f"(target >= 4x: {'met' if recompute / cached >= 4 else 'NOT met'}); max |cached - sequential| = "
          f"{difference:.2e} (target <= 1e-5: {'met' if difference <= 1e-5 else 'NOT met'})")
    print(f"  Jacobi (tolerance {blocks[0].tolerance:g}): {jacobi:8.3f} s   {recompute / jacobi:5.2f}x vs recompute, "
          f"{passes} passes over {len(blocks)} blocks (cap {len(blocks) * tokens}); max |jacobi - sequential| = "
          f"{jacobi_distance:.2e} in model space, {100 * levels_differ:.2f}% of pixels at another level")


def guidance_section(model, data, temperature: float, per_class: int = 100) -> None:
    """Class accuracy of guided samples under an SVC fitted on the digits train split."""
    from sklearn.svm import SVC

    classifier = SVC(gamma=0.001, C=10.0).fit(data.train.flatten(1).numpy(), data.labels_train.numpy())
    test_accuracy = classifier.score(data.test.flatten(1).numpy(), data.labels_test.numpy())
    labels = torch.arange(10).repeat_interleave(per_class)
    print(f"\nguided class accuracy of tarflow-digits-cond ({per_class} samples per class, temperature "
          f"{temperature}); SVC on the train split, {100 * test_accuracy:.1f}% on the test split:")
    accuracies = {}
    for weight in (0.0, 1.0, 2.0):
        with torch.no_grad():
            x = model.to_data_space(model.sample(len(labels), condition=labels, temperature=temperature,
                                                 generator=torch.Generator().manual_seed(0), guidance=weight))
        accuracies[weight] = float((torch.as_tensor(classifier.predict(x.flatten(1).numpy())) == labels).float().mean())
        print(f"  guidance {weight:g}: {100 * accuracies[weight]:5.1f}%")
    best = max(accuracies, key=accuracies.get)
    print(f"  best: guidance {best:g}, {100 * accuracies[best]:.1f}% (target >= 95%: "
          f"{'met' if accuracies[best] >= 0.95 else 'NOT met'})")


def train_conditional(scratch: Path, steps: int | None, budget: float):
    """tarflow-digits-cond trained for the steps tarflow-digits took at the budget (its own
    training section otherwise), seed 0; its test bits/dim given the labels (5 noise draws)."""
    import flowspec
    from flowspec.data import load_data
    from flowspec.train.config import TrainingConfig
    from flowspec.train.evaluate import evaluate
    from flowspec.train.runner import train

    labelled = load_data("digits", None, (1, 8, 8), 17, classes=10)
    spec = flowspec.loads_spec((ROOT / "specs" / "tarflow-digits-cond.yaml").read_text(), "tarflow-digits-cond.yaml")
    base = spec.training.model_dump()
    steps = steps or base["steps"]
    config = TrainingConfig(**{**base, "steps": steps, "epochs": None, "seed": 0, "device": "cpu",
                               "eval_every": steps, "checkpoint_every": steps, "sample_every": 10 ** 9,
                               "warmup": min(base["warmup"], max(steps // 10, 1))})
    tic = time.perf_counter()
    train(spec, labelled, config, scratch / "tarflow-digits-cond", progress=False)
    seconds = time.perf_counter() - tic
    model = flowspec.load_model(scratch / "tarflow-digits-cond" / "last.pt").eval()
    bpd = statistics.mean(evaluate(model, labelled.test, seed=i, conditions=labelled.labels_test) for i in range(5))
    print(f"\ntarflow-digits-cond seed 0: test bits/dim {bpd:.4f} given the labels, after {steps} steps "
          f"(tarflow-digits' at the budget) in {seconds:.0f} s")
    return model, labelled, spec.training.temperature


def denoiser_section(scratch: Path, steps: int, sigma: float = 0.05, n: int = 1000) -> None:
    """tarflow-digits trained with noise augmentation (``training.noise: sigma``, model space) for
    ``steps``; its test bits/dim, and the effect of the one-step denoiser ``FlowModel.denoise`` on
    its samples: the mean distance (in levels, L2 over the 64 pixels) from each sample to its
    nearest training image, raw against denoised, and the share of pixels the denoiser moves."""
    import flowspec
    from flowspec.data import load_data
    from flowspec.train.config import TrainingConfig
    from flowspec.train.evaluate import evaluate
    from flowspec.train.runner import train

    data = load_data("digits", None, (1, 8, 8), 17)
    text = (ROOT / "specs" / "tarflow-digits.yaml").read_text().replace("training:\n", f"training:\n  noise: {sigma}\n")
    spec = flowspec.loads_spec(text, "tarflow-digits-noisy.yaml")  # the model reads its noise level from the spec
    assert spec.training.noise == sigma
    base = spec.training.model_dump()
    config = TrainingConfig(**{**base, "steps": steps, "epochs": None, "seed": 0, "device": "cpu",
                               "eval_every": steps, "checkpoint_every": steps, "sample_every": 10 ** 9,
                               "warmup": min(base["warmup"], max(steps // 10, 1))})
    train(spec, data, config, scratch / "tarflow-digits-noisy", progress=False)
    model = flowspec.load_model(scratch / "tarflow-digits-noisy" / "last.pt").eval()
    bpd = statistics.mean(evaluate(model, data.test, seed=i) for i in range(5))
    with torch.no_grad():
        raw = model.sample(n, temperature=1.0, generator=torch.Generator().manual_seed(0))
    denoised = model.denoise(raw)
    train_images = data.train.flatten(1)

    def nearest(y: torch.Tensor) -> float:
        levels = model.to_data_space(y).flatten(1)
        return torch.cdist(levels, train_images).min(1).values.mean().item()

    moved = (model.to_data_space(raw) != model.to_data_space(denoised)).float().mean().item()
    print(f"\ndenoiser: tarflow-digits with training.noise {sigma} (model space), {steps} steps, seed 0: test "
          f"bits/dim {bpd:.4f} (5 noise draws); {n} samples at temperature 1: mean L2 distance to the nearest "
          f"training image {nearest(raw):.3f} levels raw, {nearest(denoised):.3f} denoised; the denoiser moves "
          f"{100 * moved:.1f}% of the pixels to another level")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per run (couplings_digits')")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed + seeds - 1 (couplings_digits' option)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="what the budget counts: wall seconds, or this process's CPU seconds (load-robust)")
    parser.add_argument("--only", nargs="*", default=None, help="recipes of section 1 (default: all)")
    parser.add_argument("--samples", type=int, default=1000, help="samples of section 2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--denoiser-steps", type=int, default=None,
                        help="steps of the noisy model (default: tarflow-digits' at the budget)")
    parser.add_argument("--sections", nargs="*", default=["digits", "sampling", "guidance", "denoiser"],
                        choices=["digits", "sampling", "guidance", "denoiser"],
                        help="sections to run (sampling, guidance and denoiser train at the budget when digits is left out)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import flowspec
    from flowspec.data import load_data

    data = load_data("digits", None, (1, 8, 8), 17)
    chosen = {k: v for k, v in recipes().items() if args.only is None or k in args.only}
    with tempfile.TemporaryDirectory(prefix="flowspec-transformers-") as scratch:
        scratch = Path(scratch)
        if "digits" not in args.sections:
            chosen = {}
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        results = equal_budget_runs(chosen, seeds, args.budget, data, scratch, args.clock)
        if results:
            print_budget_table(results, args.budget, args.clock)
        if "tarflow-digits" in results:
            mean = statistics.mean(r[0] for r in results["tarflow-digits"])
            print(f"tarflow-digits: {mean:.4f} bits/dim (target <= 2.10: {'met' if mean <= 2.10 else 'NOT met'})")
        elif {"sampling", "guidance"} & set(args.sections) or ("denoiser" in args.sections and not args.denoiser_steps):
            results["tarflow-digits"] = [run("tarflow-digits", (ROOT / "specs" / "tarflow-digits.yaml").read_text(),
                                             args.first_seed,
                                             args.budget, data, scratch, args.clock)]
        steps = results["tarflow-digits"][0][2] if "tarflow-digits" in results else None
        if "sampling" in args.sections:
            model = flowspec.load_model(scratch / f"tarflow-digits-{args.first_seed}" / "last.pt").eval()
            sampling_section(model, args.samples, args.repeats, temperature=1.0)
        if "guidance" in args.sections:
            conditional, labelled, temperature = train_conditional(scratch, steps, args.budget)
            guidance_section(conditional, labelled, temperature)
        if "denoiser" in args.sections:
            denoiser_section(scratch, args.denoiser_steps or steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
