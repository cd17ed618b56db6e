"""Glow's training recipe as options: random translations (``training.shift``), the init batch
(``training.init_batch``), Adam/Adamax betas and the Polyak decay from the epoch length
(``training.betas``, ``training.polyak_epochs``), and the per-channel learned top prior."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from flowspec import load_spec
from flowspec.cli import app
from flowspec.data.loaders import random_shift
from flowspec.errors import SpecError
from flowspec.train.config import TrainingConfig

SPECS = __import__("pathlib").Path(__file__).resolve().parent.parent / "specs"


def _ramp(n: int = 64, height: int = 10, width: int = 10) -> torch.Tensor:
    """Images whose value is 10 x the column (0..90): a translation shows as an offset of the ramp."""
    return (10 * torch.arange(width, dtype=torch.float32)).view(1, 1, 1, -1).expand(n, 2, height, width).clone()


def test_shift_translates_by_at_most_the_fraction_and_keeps_integer_levels():
    x = _ramp()
    moved = random_shift(x, 0.2, seed=5)
    assert moved.shape == x.shape and torch.equal(moved, moved.floor())
    assert moved.min() >= 0 and moved.max() <= 90
    # interior columns: value floor(10 (j - dx)) -> dx in [j - v/10 - 0.1, j - v/10]
    j = 5
    dx = j - moved[:, 0, 0, j] / 10
    assert dx.max() <= 0.2 * 10 + 0.1 and dx.min() >= -0.2 * 10
    assert dx.max() - dx.min() > 1.0, "the draws should spread over the range"
    assert torch.equal(moved[:, 0], moved[:, 1]), "one translation per image, every channel alike"
    assert torch.equal(moved[:, :, 0], moved[:, :, -1]), "a horizontal ramp is unchanged along the rows"


def test_shift_repeats_with_its_seed_and_leaves_vectors_alone():
    x = torch.randint(0, 256, (8, 3, 6, 6)).float()
    assert torch.equal(random_shift(x, 0.1, seed=3), random_shift(x, 0.1, seed=3))
    assert not torch.equal(random_shift(x, 0.3, seed=3), random_shift(x, 0.3, seed=4))
    assert torch.equal(random_shift(x, 0.0, seed=3), x)
    vectors = torch.randn(4, 5)
    assert torch.equal(random_shift(vectors, 0.1, seed=0), vectors)


def test_polyak_epochs_set_the_ema_decay_and_beta2_from_the_epoch():
    config = TrainingConfig(optimizer="adamax", polyak_epochs=1)
    # Glow's README command: 50,000 CIFAR-10 images, 8 processes x 64 -> 98 steps per epoch
    assert config.polyak_decay(98) == pytest.approx(1 - 1 / 98)
    assert config.adam_betas(98) == (0.9, pytest.approx(1 - 1 / 98))
    assert TrainingConfig().adam_betas(98) == (0.9, 0.999) and TrainingConfig().polyak_decay(98) == 0.999
    assert TrainingConfig(betas=[0.5, 0.9]).adam_betas(10) == (0.5, 0.9)


@pytest.mark.parametrize("row, message", [
    ("polyak_epochs: 1, ema: null", "polyak_epochs sets the EMA decay"),
    ("polyak_epochs: 1, betas: [0.9, 0.99]", "give polyak_epochs or betas, not both"),
    ("betas: [0.9, 1.0]", r"betas\[1\]: Input should be less than 1"),
    ("shift: 0.5", "shift: Input should be less than 0.5"),
    ("init_batch: 0", "init_batch: Input should be greater than or equal to 1"),
])
def test_a_bad_training_option_names_its_line(tmp_path, row, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"input: {{shape: [1, 8, 8], levels: 17}}\nlayers:\n  - {{kind: actnorm}}\ntraining: {{{row}}}\n")
    with pytest.raises(SpecError, match=rf"bad.yaml:4:\d+: training.*{message}"):
        load_spec(spec)


def test_glow_recipe_trains(tmp_path):
    """shift, init_batch and polyak_epochs through a real run (digits, a few steps)."""
    result = CliRunner().invoke(app, [
        "train", str(SPECS / "glow-digits.yaml"), "--steps", "2", "--eval-every", "2", "--sample-every", "1000",
        "--set", "training.shift=0.1", "--set", "training.init_batch=32", "--set", "training.polyak_epochs=1",
        "--set", "training.optimizer=adamax", "--set", "training.eval_batches=1", "--no-progress",
        "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "step 2: test bits/dim" in result.output


def test_per_channel_top_prior(tmp_path):
    """``prior: learned_channel``: one (mu, log sigma) per channel, as Glow's code computes it."""
    import math

    import flowspec

    spec = tmp_path / "top.yaml"
    spec.write_text("input: {shape: [2, 4, 4], levels: 17}\nprior: learned_channel\nlayers:\n  - {kind: squeeze}\n"
                    "  - {kind: actnorm, data_init: false}\n")
    parsed = flowspec.load_spec(spec)
    model = flowspec.compile(parsed).double()
    prior = model.top_prior
    assert prior.mean.shape == (1, 8, 1, 1)
    with torch.no_grad():
        prior.mean.copy_(torch.randn(1, 8, 1, 1))
        prior.log_std.copy_(0.3 * torch.randn(1, 8, 1, 1))
    z = torch.randn(3, 8, 2, 2, dtype=torch.float64)
    mu, log_sigma = prior.mean[0, :, 0, 0], prior.log_std[0, :, 0, 0]
    reference = sum(-0.5 * ((z[:, c] - mu[c]) / log_sigma[c].exp()) ** 2 - log_sigma[c] - 0.5 * math.log(2 * math.pi)
                    for c in range(8)).flatten(1).sum(1)
    torch.testing.assert_close(prior.log_prob(z), reference)
    from flowspec.report.costs import count_params

    graph = flowspec.build_graph(parsed)
    assert count_params(graph) == sum(p.numel() for p in model.parameters()) == 2 * 8 + 2 * 8  # actnorm + prior


def test_weight_decay_on_scales_decays_only_the_weight_norm_gains_and_tanh_scales():
    """RealNVP's L2: the optimizer's decayed group holds exactly the g of every weight-normed conv
    and the learned tanh scales."""
    import flowspec
    from flowspec.train.step import build_optimizer

    spec = flowspec.loads_spec("""
input: {shape: [2, 4, 4], levels: 17}
layers:
  - {kind: coupling, mask: checkerboard, scale: tanh, conditioner: {kind: realnvp, hidden: 4, blocks: 1}}
  - {kind: batchnorm, affine: false}
""")
    model = flowspec.compile(spec)
    config = TrainingConfig(weight_decay=5e-5, weight_decay_on="scales")
    decayed, plain = build_optimizer(model, config).param_groups
    names = {id(p): name for name, p in model.named_parameters()}
    assert decayed["weight_decay"] == 5e-5 and plain["weight_decay"] == 0.0
    decayed_names = sorted(names[id(p)].rsplit(".", 1)[-1] for p in decayed["params"])
    assert decayed_names == ["g"] * (2 + 3 * 1 + 1) + ["tanh_scale"]  # in conv, in skip, 3 per block, out
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
