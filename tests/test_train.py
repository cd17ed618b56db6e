"""The training runner on a tiny Glow: loss drops, eval/sample from the checkpoint, exact resume,
atomic checkpoints, NaN diagnosis, clear errors for corrupt or foreign checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.data import DataSplit, load_digits
from flowspec.errors import CheckpointError, FlowSpecError
from flowspec.train.checkpoints import load_checkpoint
from flowspec.train.config import TrainingConfig, override
from flowspec.train.runner import TrainingDiverged, train


@pytest.fixture(scope="module")
def small_digits() -> DataSplit:
    full = load_digits()
    return DataSplit("digits", full.train[:256], full.test[:64], levels=17)


@pytest.fixture
def spec(tiny_glow_yaml):
    return flowspec.loads_spec("name: tiny\n" + tiny_glow_yaml)


def config(**values) -> TrainingConfig:
    base = dict(steps=8, batch_size=16, lr=3e-3, warmup=2, eval_every=1000, checkpoint_every=1000,
                sample_every=1000, samples=4, ema=0.9, device="cpu")
    return TrainingConfig(**{**base, **values})


def test_loss_drops_and_files_are_written(spec, small_digits, tmp_path):
    result = train(spec, small_digits, config(steps=24, lr=5e-3), tmp_path / "run", progress=False)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.3, (first, last)
    assert math.isfinite(result.test_bpd)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.pt", "best.pt", "metrics.jsonl", "samples"} <= names
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"test_bpd"' in line for line in lines) and any('"loss"' in line for line in lines)


def test_eval_and_sample_from_the_checkpoint(spec, small_digits, tmp_path):
    train(spec, small_digits, config(), tmp_path / "run", progress=False)
    runner = CliRunner()
    evaluated = runner.invoke(app, ["eval", str(tmp_path / "run" / "last.pt")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "at step 8: test bits/dim" in evaluated.output and "300 digits images" in evaluated.output
    png = tmp_path / "grid.png"
    sampled = runner.invoke(app, ["sample", str(tmp_path / "run" / "last.pt"), "-n", "9", "--temperature", "0.7",
                                  "-o", str(png)])
    assert sampled.exit_code == 0, sampled.output
    with Image.open(png) as image:
        pixels = torch.from_numpy(__import__("numpy").asarray(image).copy())
        # 3x3 tiles of 8x8 digits upscaled 4x with 1-pixel borders
        assert image.size == (3 * 33 + 1, 3 * 33 + 1) and image.mode == "L"
    assert pixels.float().std() > 0
    npy = tmp_path / "s.npy"
    assert runner.invoke(app, ["sample", str(tmp_path / "run" / "last.pt"), "-n", "5", "-o", str(npy)]).exit_code == 0
    values = torch.from_numpy(__import__("numpy").load(npy))
    assert values.shape == (5, 1, 8, 8) and values.min() >= 0 and values.max() <= 16


def test_resume_equals_uninterrupted(spec, small_digits, tmp_path):
    whole = train(spec, small_digits, config(steps=12), tmp_path / "whole", progress=False)
    part = train(spec, small_digits, config(steps=6), tmp_path / "split", progress=False)
    rest = train(spec, small_digits, config(steps=12), tmp_path / "split", resume=True, progress=False)
    assert part.losses + rest.losses == whole.losses
    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == 12
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
        assert torch.equal(a["ema_state_dict"][key], b["ema_state_dict"][key]), key


def test_epochs_cover_the_data_once(spec, small_digits, tmp_path):
    result = train(spec, small_digits, config(steps=None, epochs=1, batch_size=32), tmp_path / "e", progress=False)
    assert result.steps == 256 // 32


def test_a_failed_write_keeps_the_previous_checkpoint(spec, small_digits, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(spec, small_digits, config(steps=4), run, progress=False)
    before = (run / "last.pt").read_bytes()
    real_save = torch.save

    def dies_midway(obj, stream, *args, **kwargs):
        real_save(obj, stream, *args, **kwargs)
        stream.seek(100)
        stream.truncate()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="simulated"):
        train(spec, small_digits, config(steps=8), run, resume=True, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert (run / "last.pt").read_bytes() == before
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".last.pt")) == []  # no temp file left


def test_nan_names_the_layer_and_keeps_the_last_checkpoint(spec, small_digits, tmp_path):
    model = flowspec.compile(spec)
    target = 5
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        if calls["n"] > 7:  # forward passes 1 (init) .. 7 are clean
            y, logdet = output
            return y * float("nan"), logdet
        return output

    model.layers[target].register_forward_hook(poison)
    with pytest.raises(TrainingDiverged) as caught:
        train(spec, small_digits, config(steps=10, checkpoint_every=3), tmp_path / "run", progress=False, model=model)
    message = str(caught.value)
    assert "\n" not in message
    assert f"layer {model.names[target]!r} (layers[{target}]" in message
    assert "diverged at step 7" in message and "last.pt (step 6)" in message and "lower --lr" in message
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 6


def test_corrupt_foreign_and_mismatched_checkpoints(spec, small_digits, tmp_path, tiny_glow_yaml):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable flowspec file"):
        train(spec, small_digits, config(), run, resume=True, progress=False)
    torch.save({"weights": torch.zeros(3)}, run / "last.pt")
    with pytest.raises(CheckpointError, match="not a flowspec-model file"):
        train(spec, small_digits, config(), run, resume=True, progress=False)
    flowspec.save_model(flowspec.compile(spec), run / "last.pt")
    with pytest.raises(CheckpointError, match="a model file, not a training checkpoint"):
        train(spec, small_digits, config(), run, resume=True, progress=False)
    train(spec, small_digits, config(steps=2), tmp_path / "ok", progress=False)
    other = flowspec.loads_spec(tiny_glow_yaml.replace("hidden: 8", "hidden: 6"))
    with pytest.raises(CheckpointError, match="different spec"):
        train(other, small_digits, config(steps=4), tmp_path / "ok", resume=True, progress=False)
    with pytest.raises(FlowSpecError, match="exists: pass --resume"):
        train(spec, small_digits, config(steps=4), tmp_path / "ok", progress=False)


def test_cli_train_errors_are_one_line(tmp_path, tiny_glow_yaml):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_glow_yaml)
    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(spec_file), "--optimizer", "sgd", "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "training.optimizer" in bad.output and "Traceback" not in bad.output
    mismatch = runner.invoke(app, ["train", str(spec_file), "--data", "npz", "--data-dir", str(tmp_path / "none.npz")])
    assert mismatch.exit_code == 2 and "no such file" in mismatch.output
    with pytest.raises(Exception, match="steps or epochs"):
        TrainingConfig(steps=5, epochs=2)
    assert override(TrainingConfig(steps=5), epochs=2).epochs == 2


def test_cli_train_runs_and_resumes(tmp_path, tiny_glow_yaml):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_glow_yaml + "training: {batch_size: 16, warmup: 1, eval_batches: 1}\n")
    runner = CliRunner()
    out = tmp_path / "run"
    first = runner.invoke(app, ["train", str(spec_file), "--steps", "3", "--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "step 3: test bits/dim" in first.output
    again = runner.invoke(app, ["train", str(spec_file), "--steps", "5", "--out", str(out), "--resume", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert load_checkpoint(out / "last.pt")["step"] == 5


def test_a_process_killed_while_writing_leaves_a_whole_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from flowspec.compile.export import read_checkpoint

    target = tmp_path / "last.pt"
    script = (
        "import sys, torch\n"
        "from flowspec.compile.export import atomic_save\n"
        "i = 0\n"
        "while True:\n"
        "    atomic_save({'format': 'flowspec-model/1', 'i': i, 'x': torch.full((1_000_000,), float(i))}, sys.argv[1])\n"
        "    i += 1\n"
        "    print(i, flush=True)\n")
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "1"  # one whole file written
        time.sleep(0.3)  # then kill it at some point of a later write
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    data = read_checkpoint(target, "flowspec-model/1")
    assert torch.equal(data["x"], torch.full((1_000_000,), float(data["i"])))


@pytest.mark.parametrize("name", ["vae-iaf-digits", "glow-digits-vardeq"])
def test_resume_is_exact_for_other_model_types(name, small_digits, tmp_path):
    """The runner uses only bits_per_dim / initialize / sample, so a VAE and a flow with a
    variational dequantizer (both draw noise in the loss) train and resume exactly too."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "specs" / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in this checkout")
    spec = flowspec.load_spec(path)
    whole = train(spec, small_digits, config(steps=6, eval_batches=1), tmp_path / "whole", progress=False)
    part = train(spec, small_digits, config(steps=3, eval_batches=1), tmp_path / "split", progress=False)
    rest = train(spec, small_digits, config(steps=6, eval_batches=1), tmp_path / "split", resume=True, progress=False)
    assert part.losses + rest.losses == whole.losses
    assert all(math.isfinite(loss) for loss in whole.losses)


def test_evaluate_draws_are_seeded_evaluations(spec, small_digits):
    """The benchmarks' test figure: one evaluation per seed, their mean, and the IW bound below it."""
    import statistics

    from flowspec.train.runner import evaluate, evaluate_draws

    torch.manual_seed(0)
    model = flowspec.compile(spec)
    model.initialize(small_digits.train[:64])
    test = small_digits.test[:32]
    state = torch.get_rng_state()
    draws = evaluate_draws(model, test, 4, batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert draws.values == tuple(evaluate(model, test, batch_size=16, seed=s) for s in (3, 4, 5, 6))
    assert len(set(draws.values)) == 4  # each draw takes new dequantization noise
    assert draws.mean == pytest.approx(statistics.fmean(draws.values))
    assert draws.stderr == pytest.approx(statistics.stdev(draws.values) / 2)
    assert evaluate_draws(model, test, 1).stderr == 0.0
    iw = evaluate_draws(model, test, 2, batch_size=16, k=16)
    assert iw.mean < draws.mean  # the importance-weighted bound is tighter than the one-draw bound
    with pytest.raises(ValueError, match="draws must be >= 1"):
        evaluate_draws(model, test, 0)


@pytest.mark.parametrize("bf16,expected", [(True, True), ("auto", False), (False, False)])
def test_bf16_autocast_on_the_cpu_only_when_asked(spec, small_digits, tmp_path, bf16, expected):
    model = flowspec.compile(spec)
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    result = train(spec, small_digits, config(steps=3, bf16=bf16), tmp_path / "run", progress=False, model=model)
    assert len(seen) >= 3 and any(seen) == expected  # the actnorm init and evaluations are not autocast
    assert all(math.isfinite(loss) for loss in result.losses)
    # evaluation stays in float32 whatever the training precision
    assert not torch.is_autocast_enabled("cpu")
