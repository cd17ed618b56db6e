"""``flowspec expand`` and ``flowspec build`` on VAE specs, through the family interface: the
expanded spec loads back to the same model, the build folder holds a loadable model.pt whose
weights round-trip, the table's parts sum to the model's parameters, and the exported sampling
program equals eager sampling on the same noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.family import family_of
from flowspec.compile.build import build_folder
from flowspec.vae.build import explicit_vae_spec, vae_build_rows
from flowspec.vae.costs import count_vae_params
from flowspec.vae.export import export_sampler

SPECS = Path(__file__).resolve().parent.parent / "specs"

#: every field left to its default, kinds included (conv, from the image input)
MINIMAL_VAE = """\
model: vae
input: {shape: [1, 4, 4], levels: 5}
latent: 3
"""

VECTOR_VAE = """\
name: vector-vae
model: vae
input: {shape: [6], levels: 2}
latent: 3
encoder: {hidden: 10, context: 2}
decoder: {hidden: 10}
likelihood: bernoulli
posterior: {steps: 2, hidden: 6}
"""


def _reloaded(spec) -> object:
    text = yaml.safe_dump(explicit_vae_spec(spec), sort_keys=False, default_flow_style=None)
    return flowspec.loads_spec(text, "expanded.yaml")


def _state(model) -> dict:
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("text", [MINIMAL_VAE, VECTOR_VAE, (SPECS / "vae-iaf-digits.yaml").read_text()],
                         ids=["minimal", "vector", "digits"])
def test_expanded_vae_spec_writes_every_default_and_loads_back_to_the_same_model(text):
    spec = flowspec.loads_spec(text)
    explicit = explicit_vae_spec(spec)
    assert explicit["encoder"]["kind"] == explicit["decoder"]["kind"] == (
        "conv" if len(spec.input.shape) == 3 else "mlp")
    assert set(explicit) == set(type(spec).model_fields)  # every field, defaults included
    again = _reloaded(spec)
    assert explicit_vae_spec(again) == explicit  # a fixed point
    torch.manual_seed(0)
    first = _state(flowspec.compile(spec))
    torch.manual_seed(0)
    second = _state(flowspec.compile(again))
    assert _same_state(first, second)


def test_expand_verb_prints_a_vae_spec():
    result = CliRunner().invoke(app, ["expand", str(SPECS / "vae-iaf-mnist.yaml")])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["model"] == "vae" and printed["encoder"]["kind"] == "conv"
    assert printed["posterior"] == {"kind": "iaf", "steps": 8, "hidden": 320, "depth": 2, "gate_bias": 2.0}
    result = CliRunner().invoke(app, ["expand", str(SPECS / "vae-iaf-mnist.yaml"), "--set", "posterior.steps=2"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["posterior"]["steps"] == 2


def test_the_family_answers_expand_and_build_for_both_families():
    flow = flowspec.load_spec(SPECS / "nice.yaml")
    vae = flowspec.load_spec(SPECS / "vae-iaf-digits.yaml")
    assert family_of(flow).explicit_spec(flow)["layers"]  # a flow: one row per layer
    assert "layers" not in family_of(vae).explicit_spec(vae)
    assert family_of(vae).build_rows is vae_build_rows


def test_build_rows_are_the_vae_parts_and_sum_to_the_model(tmp_path):
    spec = flowspec.load_spec(SPECS / "vae-iaf-digits.yaml")
    result = build_folder(spec, tmp_path / "out", export=False)
    names = [row.name for row in result.rows]
    assert names == ["encoder", "z0", "iaf.0", "iaf.1", "iaf.2", "iaf.3", "decoder", "likelihood", "prior"]
    assert [row.index for row in result.rows] == list(range(len(names)))
    assert sum(row.params for row in result.rows) == result.total_params
    assert result.total_params == count_vae_params(result.graph)  # the cost rules agree
    by_name = {row.name: row.params for row in result.rows}
    assert by_name["encoder"] > 0 and by_name["decoder"] > 0 and by_name["iaf.0"] == by_name["iaf.3"] > 0
    for name in ("expanded.yaml", "model.pt", "report.md", "diagram.svg"):
        assert (tmp_path / "out" / name).is_file(), name
    assert not (tmp_path / "out" / "sample.pt2").exists()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| iaf.3 | iaf (reversed) |" in report and "model: vae" in report


def test_built_model_file_round_trips_through_load_model(tmp_path):
    spec = flowspec.loads_spec(VECTOR_VAE)
    torch.manual_seed(3)
    result = build_folder(spec, tmp_path, export=False)
    loaded = flowspec.load_model(tmp_path / "model.pt")
    assert type(loaded) is type(result.model)
    assert _same_state(_state(loaded), _state(result.model))
    x = torch.randint(0, 2, (5, 6)).float()
    torch.manual_seed(7)
    expected = result.model.elbo(x)
    torch.manual_seed(7)
    assert torch.equal(loaded.elbo(x), expected)
    # the expanded spec next to it is the same spec
    expanded = flowspec.load_spec(tmp_path / "expanded.yaml")
    assert explicit_vae_spec(expanded) == explicit_vae_spec(loaded.spec)


def test_exported_sampling_program_equals_eager_sampling_on_fixed_noise(tmp_path):
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(VECTOR_VAE)).eval()
    with torch.no_grad():  # weights far from the init, so samples vary with the noise
        for p in model.parameters():
            p.normal_(0.0, 0.7)
    paths = export_sampler(model, tmp_path, batch=3)
    program = torch.export.load(paths["sample"]).module()
    for n, temperature in ((7, 0.7), (1, 1.0)):  # other batch sizes than the export's
        eager = model.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(n))
        eps = torch.randn((n, model.latent), generator=torch.Generator().manual_seed(n))
        exported = program(torch.tensor(temperature), eps)
        assert exported.shape == (n, 6)
        assert torch.equal(exported, eager)
        if n > 1:  # the samples differ with the noise: the comparison is not between constants
            assert len({tuple(row) for row in exported.tolist()}) > 1


def test_build_verb_prints_the_parts_table_for_a_vae_spec(tmp_path):
    path = tmp_path / "vector.yaml"
    path.write_text(VECTOR_VAE)
    result = CliRunner().invoke(app, ["build", str(path), "--out", str(tmp_path / "out"), "--no-export"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    model = flowspec.load_model(tmp_path / "out" / "model.pt")
    total = sum(p.numel() for p in model.parameters())
    for part in ("encoder", "z0", "iaf.0", "iaf.1", "decoder", "likelihood", "prior"):
        assert f" {part} " in result.output, part
    assert f"{total:,}" in result.output
    assert "wrote model:" in result.output and "Traceback" not in result.output


def test_bench_verb_times_a_vae_spec(tmp_path):
    path = tmp_path / "vector.yaml"
    path.write_text(VECTOR_VAE)
    result = CliRunner().invoke(app, ["bench", str(path), "--batch", "2", "--repeats", "1", "--no-baselines"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    model = flowspec.compile(flowspec.loads_spec(VECTOR_VAE))
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in result.output
    for line in ("train step  flowspec ", "sampling    flowspec ", "of the measured conv peak",
                 "memory      saved activations standard", "skipped     ceiling flowspec: no convolutions"):
        assert line in result.output, line
    assert "baselines" not in result.output  # --no-baselines: not even a skipped line


def test_build_refuses_a_vae_too_large_for_memory_before_allocating(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(VECTOR_VAE.replace("decoder: {hidden: 10}", "decoder: {hidden: 600000, depth: 4}"))
    result = CliRunner().invoke(app, ["build", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "huge.yaml:1:1: <root>: needs 3.93 TiB of parameters" in result.output  # from the VAE's cost rules
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
