"""``--set PATH=VALUE``: dotted paths with list indices into the spec, YAML values, applied before
validation; a broken override is a located error naming ``--set``; an unknown path gets a
did-you-mean. Through the Python API and the CLI."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import SpecError
from flowspec.spec.overrides import parse_override

runner = CliRunner()

SPEC = """\
name: small
input: {shape: [1, 8, 8], levels: 17}
levels: 2
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SPEC)
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_paths_and_values_are_parsed():
    override = parse_override("step[2].conditioner.hidden=256")
    assert override.path == ("step", 2, "conditioner", "hidden") and override.value == 256
    assert parse_override("layers.3.kind=actnorm").path == ("layers", 3, "kind")
    assert parse_override("name='16'").value == "16"
    assert parse_override("step[0]={kind: actnorm, data_init: false}").value == {"kind": "actnorm", "data_init": False}
    assert parse_override("preprocess=").value is None


def test_a_valid_override_changes_the_expanded_spec(spec):
    result = _run("expand", spec, "--set", "steps=3", "--set", "step[2].conditioner.hidden=16")
    assert result.exit_code == 0, result.output
    layers = yaml.safe_load(result.stdout)["layers"]
    couplings = [row for row in layers if row["kind"] == "coupling"]
    assert len(couplings) == 2 * 3 and {row["conditioner"]["hidden"] for row in couplings} == {16}
    plain = yaml.safe_load(_run("expand", spec).stdout)["layers"]
    assert len([row for row in plain if row["kind"] == "coupling"]) == 2 * 2


def test_overrides_create_sections_and_open_bare_rows(spec):
    parsed = flowspec.load_spec(spec, ["training.lr=1e-3", "step[0].data_init=false", "step[-1].mask=checkerboard"])
    assert parsed.training.lr == pytest.approx(1e-3)
    assert parsed.step[0].kind == "actnorm" and parsed.step[0].data_init is False
    assert parsed.step[2].mask == "checkerboard"
    assert flowspec.load_spec(spec, {"steps": 5}).steps == 5
    assert flowspec.load_spec(spec).steps == 2  # the file is untouched


@pytest.mark.parametrize("override, message", [
    ("steps=true", r"steps: Input should be a valid integer"),
    ("step[1].lu='yes'", r"step\[1\].lu: Input should be a valid boolean"),
    ("step[2].clamp=100", r"step\[2\].clamp: clamp must be in \(0, 50\)"),
    ("levels=5", r"levels: .*squeeze needs even height and width.*at most 3 fit"),
    ("input.shape=[8, 8]", r"input.shape: shape is \[C, H, W\]"),
])
def test_a_breaking_override_is_a_located_error_naming_set(spec, override, message):
    result = _run("validate", spec, "--set", override)
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith(f"--set {override}: ") and "Traceback" not in result.output
    assert re.search(message, line), line


def test_errors_not_caused_by_an_override_keep_their_file_line(spec, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(SPEC.replace("lu: true", "lu: maybe"))
    result = _run("validate", broken, "--set", "steps=3")
    assert result.exit_code == 2 and result.stderr.startswith(f"{broken}:7:")


@pytest.mark.parametrize("override, hint", [
    ("stpes=16", "did you mean 'steps'"),
    ("trainig.lr=0.1", "did you mean 'training'"),
    ("stepz[2].conditioner.hidden=256", "did you mean 'step'"),
    ("step[2].conditioner.hiden=256", "did you mean 'hidden'"),
])
def test_an_unknown_path_gets_a_did_you_mean(spec, override, hint):
    with pytest.raises(SpecError) as caught:
        flowspec.load_spec(spec, [override])
    (problem,) = caught.value.problems
    assert problem.file == f"--set {override}" and hint in problem.hint


@pytest.mark.parametrize("override, message", [
    ("step[7].lu=true", "index 7 is out of range: step has 3 items"),
    ("steps.x=1", "steps is a int, not a mapping or list"),
    ("step.lu=true", "step is a list; index it with"),
    ("steps", "an override is PATH=VALUE"),
    ("steps=[1", "cannot read the value as YAML"),
    ("step[x=1", "cannot read the path"),
])
def test_paths_that_lead_nowhere(spec, override, message):
    result = _run("expand", spec, "--set", override)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.startswith(f"--set {override}")


@pytest.mark.parametrize("verb", ["validate", "expand", "build", "check", "render", "report", "train", "bench"])
def test_every_spec_verb_takes_set(verb):
    result = _run(verb, "--help")
    assert "--set" in result.stdout and "PATH=VALUE" in result.stdout


def test_report_and_render_use_the_override(spec, tmp_path):
    small = _run("report", spec, "--format", "json")
    wide = _run("report", spec, "--format", "json", "--set", "step[2].conditioner.hidden=32")
    assert small.exit_code == wide.exit_code == 0
    assert json.loads(wide.stdout)["params"] > json.loads(small.stdout)["params"]
    out = tmp_path / "d.dot"
    assert _run("render", spec, "-o", out, "--detail", "layer", "--set", "steps=1").exit_code == 0
    assert "level0.step1" not in out.read_text() and "level0.step0" in out.read_text()
