"""Exports users share: safetensors weights (spec and checksum in the metadata, loaded without any
pickle) and ONNX programs of the density and sampling directions, run by onnxruntime against
PyTorch. Missing extras are one line naming them."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.compile.export import save_safetensors
from flowspec.data import load_data
from flowspec.errors import CheckpointError, FlowSpecError

runner = CliRunner()

TINY = """\
name: tiny
input: {shape: [1, 8, 8], levels: 17}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""
CONDITIONAL = TINY.replace("levels: 17}\n", "levels: 17}\ncondition: {kind: class, classes: 3, embed: 2}\n")


def trained_like(text: str, seed: int = 0):
    """A model whose every parameter is away from its (identity) initialisation."""
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(text))
    x = load_data("digits", None, (1, 8, 8), 17).train[:64]
    with torch.no_grad():
        model.initialize(x) if "condition:" not in text else model.initialize(x, condition=torch.arange(64) % 3)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def one_line_error(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("text", [TINY, CONDITIONAL], ids=["unconditional", "class-conditional"])
def test_safetensors_round_trip_is_exact_and_needs_no_pickle(text, tmp_path, monkeypatch):
    from safetensors import safe_open

    model = trained_like(text)
    path = save_safetensors(model, tmp_path / "model.safetensors", data={"kind": "digits", "dir": None})
    with safe_open(str(path), framework="pt") as opened:
        metadata = opened.metadata()
    assert json.loads(metadata["spec"])["name"] == "tiny" and json.loads(metadata["data"])["kind"] == "digits"
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load (pickle) used"))
    loaded = flowspec.load_model(path)
    for (name, a), (other, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert name == other and torch.equal(a, b)
    x = load_data("digits", None, (1, 8, 8), 17).test[:8].float() + 0.5
    c = {} if "condition:" not in text else {"condition": torch.arange(8) % 3}
    with torch.no_grad():
        assert torch.equal(model.log_prob(x / 17 - 0.5, **c), loaded.log_prob(x / 17 - 0.5, **c))


def test_a_damaged_or_foreign_safetensors_file_is_one_line(tmp_path):
    from safetensors.torch import save_file

    path = save_safetensors(trained_like(TINY), tmp_path / "model.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # a bit of the last weight
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: the sha256 of its contents"):
        flowspec.load_model(tmp_path / "flipped.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    assert "without flowspec's metadata" in one_line_error("sample", tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    assert "not a readable safetensors file" in one_line_error("eval", tmp_path / "junk.safetensors")


def test_export_verb_writes_safetensors_that_eval_scores_alike(tmp_path):
    flowspec.save_model(trained_like(TINY), tmp_path / "model.pt")
    out = ok("export", tmp_path / "model.pt", "--format", "safetensors").stdout
    assert f"wrote {tmp_path / 'model.safetensors'}" in out
    from_pickle = ok("eval", tmp_path / "model.pt").stdout.split("test bits/dim ")[1].split()[0]
    from_safetensors = ok("eval", tmp_path / "model.safetensors").stdout.split("test bits/dim ")[1].split()[0]
    assert from_pickle == from_safetensors
    ok("sample", tmp_path / "model.safetensors", "-n", 4, "-o", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 8, 8)
    assert "--format 'tflite'" in one_line_error("export", tmp_path / "model.pt", "--format", "tflite")


def _onnx_against_torch(model, folder, conditional: bool) -> dict[str, float]:
    """Run the written programs in onnxruntime on inputs of this test's own (batch 5, real digits for
    the density) and return the largest absolute difference from PyTorch per direction."""
    import onnxruntime

    from flowspec.compile.export import _ConditionalDensity, _ConditionalSampler, _Density, _Sampler

    generator = torch.Generator().manual_seed(7)
    x = (load_data("digits", None, (1, 8, 8), 17).test[:5].float() + torch.rand(5, 1, 8, 8, generator=generator)) / 17 - 0.5
    eps = [torch.randn(5, *shape, generator=generator) for shape in model.latent_shapes]
    t = torch.tensor(0.8)
    c = torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        cases = {"density": ((x, c), _ConditionalDensity(model)(x, c)) if conditional else ((x,), _Density(model)(x)),
                 "sample": ((t, c, *eps), (_ConditionalSampler(model)(t, c, *eps),)) if conditional
                 else ((t, *eps), (_Sampler(model)(t, *eps),))}
    worst = {}
    for what, (args, expected) in cases.items():
        session = onnxruntime.InferenceSession(str(folder / f"{what}.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)})
        assert len(got) == len(expected)
        worst[what] = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
        if what == "density":  # log p is of order 100 here
            assert float(np.abs(got[-1] - expected[-1].numpy()).max()) <= 1e-6 * float(expected[-1].abs().max()) * 100
    return worst


def test_onnx_density_and_sampling_match_pytorch(tmp_path):
    model = trained_like(TINY)
    flowspec.save_model(model, tmp_path / "model.pt")
    out = ok("export", tmp_path / "model.pt", "--format", "onnx", "-o", tmp_path / "onnx").stdout
    assert "onnxruntime vs PyTorch, density: max |difference|" in out
    worst = _onnx_against_torch(model, tmp_path / "onnx", conditional=False)
    assert worst["density"] < 1e-4 and worst["sample"] < 1e-5, worst  # docs/guide.md states these bounds


@pytest.mark.slow
def test_onnx_of_a_class_conditional_model_takes_the_labels(tmp_path):
    from flowspec.compile.onnx_export import export_onnx

    model = trained_like(CONDITIONAL)
    result = export_onnx(model, tmp_path / "onnx")
    assert [i.name for i in __import__("onnxruntime").InferenceSession(str(result.paths["density"])).get_inputs()] == ["x", "c"]
    worst = _onnx_against_torch(model, tmp_path / "onnx", conditional=True)
    assert worst["density"] < 1e-4 and worst["sample"] < 1e-5, worst


def test_missing_extras_are_one_line(tmp_path, monkeypatch):
    flowspec.save_model(trained_like(TINY), tmp_path / "model.pt")
    save_safetensors(trained_like(TINY), tmp_path / "shared.safetensors")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert one_line_error("export", tmp_path / "model.pt", "--format", "onnx") == (
        "error: ONNX export needs onnxscript, not installed: pip install 'flowspec[onnx]'")
    for name in [m for m in sys.modules if m == "safetensors" or m.startswith("safetensors.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert one_line_error("export", tmp_path / "model.pt", "--format", "safetensors") == (
        "error: writing safetensors needs the safetensors package: pip install 'flowspec[safetensors]'")
    with pytest.raises(FlowSpecError, match=r"flowspec\[safetensors\]"):
        flowspec.load_model(tmp_path / "shared.safetensors")


def test_the_core_imports_and_runs_none_of_the_extras(tmp_path):
    """Importing flowspec and its CLI, validating and sampling a plain PNG load no optional package."""
    import subprocess

    flowspec.save_model(trained_like(TINY), tmp_path / "model.pt")
    code = ("import sys\n"
            "from typer.testing import CliRunner\n"
            "import flowspec, flowspec.cli\n"
            f"r = CliRunner().invoke(flowspec.cli.app, ['sample', {str(tmp_path / 'model.pt')!r}, '-n', '4', '-o', {str(tmp_path / 's.png')!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "extras = {'matplotlib', 'onnx', 'onnxruntime', 'onnxscript', 'safetensors', 'nbclient', 'ipykernel'}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & extras))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_onnx_refuses_a_vae_in_one_line_and_safetensors_takes_it(tmp_path):
    from pathlib import Path

    spec = flowspec.load_spec(Path(__file__).resolve().parent.parent / "specs" / "vae-iaf-digits.yaml")
    vae = flowspec.compile(spec).eval()
    flowspec.save_model(vae, tmp_path / "vae.pt")
    assert "ONNX export covers flow models" in one_line_error("export", tmp_path / "vae.pt", "--format", "onnx")
    ok("export", tmp_path / "vae.pt", "--format", "safetensors")
    loaded = flowspec.load_model(tmp_path / "vae.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))
