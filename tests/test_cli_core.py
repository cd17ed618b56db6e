"""The core verbs through typer's CliRunner: validate, expand, build, check, schema -- exit codes,
plain one-line errors with file:line:col, and no tracebacks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app

SPECS = Path(__file__).resolve().parent.parent / "specs"
runner = CliRunner()

TINY = """\
name: tiny
input: {shape: [1, 4, 4], levels: 17}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 4}}
"""

BAD = """\
input: {shape: [1, 8, 8]}
layers:
  - squeeze
  - kind: coupling
    conditioner: {kind: mlp}
  - {kind: invconv, lu: maybe}
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture
def bad(tmp_path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _no_traceback(result):
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_validate_ok(tiny):
    result = _run("validate", tiny)
    assert result.exit_code == 0, result.output
    assert f"{tiny}: ok" in result.stdout and "latents [(2, 2, 2), (8, 1, 1)]" in result.stdout


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_validate_shipped_specs(path):
    result = _run("validate", path)
    assert result.exit_code == 0, result.output


def test_validate_bad_spec(bad):
    result = _run("validate", bad)
    assert result.exit_code == 2
    _no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1  # pydantic problems come first; the shape problem needs a valid spec
    assert re.match(rf"{re.escape(str(bad))}:6:\d+: layers\[2\]\.lu: .*valid boolean", lines[0])
    assert result.stdout == ""


def test_validate_shape_problems_one_line_each(tmp_path):
    path = tmp_path / "shapes.yaml"
    path.write_text(BAD.replace("lu: maybe", "lu: true").replace("  - squeeze\n", "  - actnorm\n"))
    result = _run("validate", path)
    assert result.exit_code == 2
    _no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert [re.match(rf"{re.escape(str(path))}:(\d+):\d+: ", line).group(1) for line in lines] == ["4", "6"]
    assert "channel mask needs at least 2 channels" in lines[0] and "(hint: squeeze first" in lines[0]
    assert "invconv on 1 channel" in lines[1]


def test_missing_file(tmp_path):
    for command in ("validate", "expand", "build", "check"):
        result = _run(command, tmp_path / "nope.yaml")
        assert result.exit_code == 2, (command, result.output)
        _no_traceback(result)
        assert f"no such file: {tmp_path / 'nope.yaml'}" in result.stderr


def test_yaml_syntax_error_is_located(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("input: {shape: [4]}\nlayers:\n  - kind: scaling: 2\n")
    result = _run("validate", path)
    assert result.exit_code == 2
    _no_traceback(result)
    assert result.stderr.startswith(f"{path}:3:")
    assert "invalid YAML" in result.stderr


def test_expand_round_trips(tiny, tmp_path):
    result = _run("expand", tiny)
    assert result.exit_code == 0, result.output
    expanded = tmp_path / "expanded.yaml"
    expanded.write_text(result.stdout)
    data = yaml.safe_load(result.stdout)
    assert "levels" not in data and "steps" not in data and isinstance(data["layers"], list)
    original = flowspec.build_graph(flowspec.load_spec(tiny))
    again = flowspec.build_graph(flowspec.load_spec(expanded))
    assert [(n.name, n.kind, n.in_shape, n.out_shape) for n in again.layers] == \
           [(n.name, n.kind, n.in_shape, n.out_shape) for n in original.layers]
    assert again.latent_shapes == original.latent_shapes
    # the same model: equal parameter counts and equal outputs from the same weights
    model, model_again = flowspec.compile(original), flowspec.compile(again)
    model_again.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model_again.eval()(x)[1], model.eval()(x)[1])


@pytest.mark.parametrize("name", ["realnvp", "nice"])
def test_expand_shipped_repeat_specs(name, tmp_path):
    result = _run("expand", SPECS / f"{name}.yaml")
    assert result.exit_code == 0, result.output
    expanded = tmp_path / "expanded.yaml"
    expanded.write_text(result.stdout)
    original = flowspec.build_graph(flowspec.load_spec(SPECS / f"{name}.yaml"))
    again = flowspec.build_graph(flowspec.load_spec(expanded))
    assert [(n.name, n.in_shape, n.out_shape) for n in again.layers] == \
           [(n.name, n.in_shape, n.out_shape) for n in original.layers]


def test_expand_keeps_a_training_length_given_in_epochs(tmp_path):
    """A spec whose training runs for ``epochs`` expands to one that loads back (steps left out)."""
    spec = tmp_path / "epochs.yaml"
    spec.write_text("input: {shape: [4], levels: 4}\n"
                    "layers: [{kind: coupling, conditioner: {kind: mlp, hidden: [8]}}]\n"
                    "training: {epochs: 3, batch_size: 8}\n")
    result = _run("expand", spec)
    assert result.exit_code == 0, result.output
    training = yaml.safe_load(result.stdout)["training"]
    assert training["epochs"] == 3 and "steps" not in training
    expanded = tmp_path / "expanded.yaml"
    expanded.write_text(result.stdout)
    assert flowspec.load_spec(expanded).training == flowspec.load_spec(spec).training


def test_expand_bad_spec(bad):
    result = _run("expand", bad)
    assert result.exit_code == 2 and result.stdout == ""
    _no_traceback(result)


def test_build_without_export(tiny, tmp_path):
    out = tmp_path / "out"
    result = _run("build", tiny, "--out", out, "--no-export")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["diagram.svg", "expanded.yaml", "model.pt", "report.md"]
    model = flowspec.load_model(out / "model.pt")
    total = sum(p.numel() for p in model.parameters())
    assert f"{total:,}" in result.stdout
    for name in model.names:
        assert name in result.stdout
    assert "wrote model" in result.stdout


def test_build_bad_spec_writes_nothing(bad, tmp_path):
    out = tmp_path / "out"
    result = _run("build", bad, "-o", out, "--no-export")
    assert result.exit_code == 2
    _no_traceback(result)
    assert not out.exists()


@pytest.mark.slow  # torch.export of both directions: about 5 s on a shared 2-core CPU
def test_build_with_export(tiny, tmp_path):
    out = tmp_path / "out"
    result = _run("build", tiny, "--out", out)
    assert result.exit_code == 0, result.output
    assert {"density.pt2", "sample.pt2", "model.pt", "expanded.yaml"} <= {p.name for p in out.iterdir()}
    model = flowspec.load_model(out / "model.pt")
    x = torch.randn(3, 1, 4, 4)
    density = torch.export.load(out / "density.pt2").module()
    with torch.no_grad():
        exported = density(x)
        zs, logdet = model(x)
        log_prob = model.log_prob(x)
    for a, b in zip(exported, [*zs, logdet, log_prob], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # any batch size, not only the one it was exported with
        torch.testing.assert_close(density(x[:1])[-1], log_prob[:1], rtol=1e-5, atol=1e-5)
    sampler = torch.export.load(out / "sample.pt2").module()
    eps = [torch.randn(3, *shape) for shape in model.latent_shapes]
    temperature = torch.tensor(0.5)
    with torch.no_grad():
        torch.testing.assert_close(sampler(temperature, *eps), model.generate(eps, 0.5), rtol=1e-5, atol=1e-5)


def test_check_shipped_spec():
    result = _run("check", SPECS / "glow-digits.yaml", "--width", 4)
    assert result.exit_code == 0, result.output
    match = re.search(r"round-trip error .*= ([0-9.e+-]+)", result.stdout)
    assert match and float(match.group(1)) < 1e-8
    assert "ok (tolerance" in result.stdout


def test_check_reports_failure_above_tolerance(tiny):
    result = _run("check", tiny, "--tolerance", 0)
    assert "round-trip error" in result.stdout
    # errors are rounding-sized, not zero: with tolerance 0 the check must fail unless exact
    errors = [float(v) for v in re.findall(r"= ([0-9.e+-]+)", result.stdout)]
    if max(errors) > 0:
        assert result.exit_code == 1 and "FAILED" in result.stdout
    else:
        assert result.exit_code == 0


def test_check_bad_spec(bad):
    result = _run("check", bad)
    assert result.exit_code == 2
    _no_traceback(result)


def test_schema(tmp_path):
    result = _run("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    models = [schema["$defs"][ref["$ref"].split("/")[-1]] for ref in schema["anyOf"]]
    by_family = {model["properties"]["model"].get("const", "flow"): model for model in models}
    flow, vae, hvae = by_family["flow"], by_family["vae"], by_family["hvae"]
    assert "layers" in flow["properties"] and "input" in flow["properties"]
    assert "latent" in vae["properties"] and "blocks" in hvae["properties"]
    text = json.dumps(schema)
    for kind in flowspec.layers.LAYER_KINDS:
        assert f'"{kind}"' in text
    out = tmp_path / "schema.json"
    result = _run("schema", "--out", out)
    assert result.exit_code == 0 and json.loads(out.read_text()) == schema


def test_help_lists_core_commands():
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("build", "validate", "expand", "check", "schema"):
        assert command in result.stdout


@pytest.mark.parametrize("arguments, named", [
    (["train"], "Missing argument 'spec'"),
    (["validate", "specs/glow.yaml", "--bogus"], "No such option: --bogus"),
    (["nosuchverb"], "No such command 'nosuchverb'"),
    (["interpolate", "m.pt", "1", "2", "--steps", "1000000000"], "'--steps'"),
])
def test_usage_errors_are_one_line_and_exit_2(arguments, named):
    """The installed command (not typer's test runner) says a usage error in one line naming the
    verb and the argument, with no framed box and no traceback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flowspec", *arguments], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("flowspec"), done.stderr
    assert "--help" in lines[0] and "Traceback" not in done.stderr and done.stdout == ""
