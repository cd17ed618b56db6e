"""The pretrained digits models shipped in flowspec/pretrained/: each loads by name without a
pickle, its record names the command and commit that trained it, and its test bits/dim, measured
again here with the same noise seed, is the recorded figure."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import CheckpointError
from flowspec.pretrained import PRETRAINED_FOLDER, records, shipped
from flowspec.train.evaluate import evaluate_checkpoint

pytest.importorskip("safetensors")

EXPECTED = ["flowpp-digits", "glow-digits", "glow-digits-cond", "vae-iaf-digits"]


def test_the_four_digits_models_are_shipped_small_with_their_records():
    assert shipped() == EXPECTED
    total = 0
    for name, record in records().items():
        assert record["command"].startswith(f"flowspec train specs/{name}.yaml --steps {record['steps']} --seed 0")
        assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]) and record["script"] == "python scripts/pretrain_digits.py"
        size = (PRETRAINED_FOLDER / f"{name}.safetensors").stat().st_size
        assert size == record["file_bytes"]
        total += size
    assert total < 5_000_000  # a few MB in the repository, all four together


@pytest.mark.parametrize("name", EXPECTED)
def test_test_bits_per_dim_is_the_recorded_figure(name):
    measured = evaluate_checkpoint(f"pretrained:{name}", seed=0).bpd
    assert measured == pytest.approx(records()[name]["test_bits_per_dim"], abs=1e-4)


def test_verbs_take_pretrained_names(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["sample", "pretrained:glow-digits", "-n", "4", "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["pretrained"])
    assert result.exit_code == 0 and "pretrained:glow-digits-cond" in result.output
    result = runner.invoke(app, ["sample", "pretrained:glow-cifar", "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "no such pretrained model; shipped: flowpp-digits, glow-digits" in result.output
    with pytest.raises(CheckpointError, match="pretrained:nope"):
        flowspec.load_model("pretrained:nope")
