"""The papers' data and training options (input.bits, horizontal flips) and one tiny spec with
every new kind (spline, mixlogistic, batchnorm, resnet, gated, Glow's conv options) through
train, eval and sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import flowspec
from flowspec.cli.app import app
from flowspec.data import load_data, load_digits
from flowspec.data.loaders import DataSplit, random_flip
from flowspec.errors import DataError, SpecError
from flowspec.train.config import TrainingConfig
from flowspec.train.runner import train

TINY_NEW_KINDS = """name: tiny-new-kinds
input: {shape: [1, 8, 8], levels: 17}
dequantization: {kind: uniform}
preprocess: {kind: logit, alpha: 0.05}
layers:
  - {kind: batchnorm}
  - {kind: coupling, mask: checkerboard, transform: {kind: spline, bins: 4, bound: 4.0},
     conditioner: {kind: resnet, hidden: 8, blocks: 1, norm: batch}}
  - {kind: squeeze}
  - {kind: coupling, mask: channel, transform: {kind: mixlogistic, components: 3},
     conditioner: {kind: gated, hidden: 8, blocks: 1, heads: 2, dropout: 0.1}}
  - {kind: coupling, mask: channel, parity: 1, transform: affine,
     conditioner: {kind: conv, hidden: 8, actnorm: true, learned_scale: true}}
  - {kind: coupling, mask: checkerboard, parity: 1, transform: {kind: spline, bins: 3},
     conditioner: {kind: resnet, hidden: 8, blocks: 1, norm: weight}}
"""


def test_bits_set_the_levels_and_a_conflict_names_the_line():
    spec = flowspec.loads_spec("input: {shape: [3, 8, 8], bits: 5}\nlayers: [{kind: actnorm}]\n")
    assert (spec.input.bits, spec.input.levels) == (5, 32)
    with pytest.raises(SpecError, match=r":1:.*input.*bits: 5 gives 32 levels, but levels is 256"):
        flowspec.loads_spec("input: {shape: [3, 8, 8], bits: 5, levels: 256}\nlayers: [{kind: actnorm}]\n")


def test_bits_reduce_8_bit_data(tmp_path):
    rng = np.random.default_rng(0)
    train_part, test_part = rng.integers(0, 256, (10, 1, 4, 4)), rng.integers(0, 256, (3, 1, 4, 4))
    np.savez(tmp_path / "d.npz", train=train_part, test=test_part)
    data = load_data("npz", tmp_path / "d.npz", (1, 4, 4), 32, bits=5)
    assert data.levels == 32
    assert torch.equal(data.train, torch.from_numpy(train_part // 8).float())
    assert torch.equal(data.test, torch.from_numpy(test_part // 8).float())
    with pytest.raises(DataError, match="input.bits reduces 8-bit data"):
        load_data("digits", None, (1, 8, 8), 8, bits=3)


def test_random_flip_mirrors_about_half_the_images_and_repeats():
    x = torch.arange(64 * 6, dtype=torch.float32).view(64, 1, 2, 3)
    flipped = random_flip(x, seed=7)
    mirrored = torch.tensor([torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x)])
    kept = torch.tensor([torch.equal(f, o) for f, o in zip(flipped, x)])
    assert bool((mirrored | kept).all()) and 16 < int(mirrored.sum()) < 48
    assert torch.equal(random_flip(x, seed=7), flipped)
    assert torch.equal(random_flip(torch.ones(4, 6), seed=1), torch.ones(4, 6))


def test_every_new_kind_trains_evaluates_and_samples(tmp_path):
    spec = flowspec.loads_spec(TINY_NEW_KINDS)
    full = load_digits()
    data = DataSplit("digits", full.train[:128], full.test[:32], levels=17)
    config = TrainingConfig(steps=6, batch_size=16, lr=1e-3, warmup=2, eval_every=1000, checkpoint_every=1000,
                            sample_every=1000, samples=4, ema=0.9, device="cpu", flip=True)
    result = train(spec, data, config, tmp_path / "run", progress=False)
    assert all(math.isfinite(v) for v in result.losses) and math.isfinite(result.test_bpd)
    runner = CliRunner()
    evaluated = runner.invoke(app, ["eval", str(tmp_path / "run" / "last.pt")])
    assert evaluated.exit_code == 0 and "test bits/dim" in evaluated.output, evaluated.output
    npy = tmp_path / "s.npy"
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run" / "last.pt"), "-n", "3", "-o", str(npy)])
    assert sampled.exit_code == 0, sampled.output
    values = np.load(npy)
    assert values.shape == (3, 1, 8, 8) and values.min() >= 0 and values.max() <= 16


def test_a_dequantizer_coupling_conditioner_must_fit_the_input():
    text = ("input: {shape: [6], levels: 17}\n"
            "dequantization: {kind: variational, coupling: {conditioner: {kind: gated, hidden: 8, heads: 2}}}\n"
            "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [8]}}]\n")
    with pytest.raises(flowspec.FlowSpecError, match=r"dequantization.coupling.conditioner.kind.*gated conditioner needs an image"):
        flowspec.build_graph(flowspec.loads_spec(text, "bad.yaml"))


BAD_VALUES = [
    ("transform: {kind: spline, bins: 1}", "bins must be at least 2"),
    ("transform: {kind: spline, bound: 0}", "bound must be > 0"),
    ("transform: {kind: mixlogistic, components: 1}", "components must be at least 2"),
    ("conditioner: {kind: gated, hidden: 10, heads: 4}", "heads .4. must divide hidden .10."),
    ("conditioner: {kind: gated, dropout: 1.0}", "dropout must be in"),
    ("layout: rows", "layout: Input should be 'blocks' or 'interleaved'"),
    ("transform: {kind: affine, scale: tan}", "Input should be 'sigmoid', 'sigmoid2', 'exp' or 'tanh'"),
]


@pytest.mark.parametrize("row, message", BAD_VALUES)
def test_validate_names_the_line_of_a_bad_value(tmp_path, row, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: {shape: [2, 4, 4], levels: 17}\nlayers:\n  - {kind: actnorm}\n"
                    f"  - {{kind: coupling, {row}}}\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert __import__("re").search(rf"bad.yaml:4:\d+: layers\[1\]\..*{message}", lines[0]), lines[0]


def test_an_affine_option_on_another_transform_names_the_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: {shape: [2, 4, 4], levels: 17}\nlayers:\n  - {kind: actnorm}\n"
                    "  - {kind: coupling, transform: additive, order: shift_scale}\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert result.output.strip() == f"{spec}:4:5: layers[1]: order applies to transform: affine, not additive"


def test_validate_names_the_line_of_a_bad_momentum(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: {shape: [2, 4, 4], levels: 17}\nlayers:\n  - {kind: batchnorm, momentum: 1.0}\n")
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "bad.yaml:3:" in result.output and "momentum must be in (0, 1)" in result.output


@pytest.mark.slow  # torch.export of both directions of two small models: ~1 min on a shared 2-core CPU
def test_every_new_kind_exports_both_directions(tmp_path):
    from flowspec.compile.build import build_folder

    result = build_folder(flowspec.loads_spec(TINY_NEW_KINDS), tmp_path / "out", export=True)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"density.pt2", "sample.pt2"} <= names, (result, names)
