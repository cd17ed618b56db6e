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
