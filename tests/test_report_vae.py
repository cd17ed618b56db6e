"""The cost report of ``model: vae`` specs (rules in :mod:`flowspec.vae.costs`): parameter counts
equal the compiled VAEModel's, matmul FLOPs of one ELBO pass and of a sampling pass equal
torch's FlopCounterMode, training activations equal what autograd saves for backward, and the
``report`` verb prints the rows."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.report import Device, report_spec, to_markdown
from flowspec.vae.costs import vae_cost_report
from flowspec.vae.costs import count_vae_params, vae_parts
from flowspec.vae.graph import build_vae_graph
from flowspec.vae.model import VAEModel

FAKE = Device("fake", {"float32": 1e12}, 1e11, 8e9, latency=5e-6)
runner = CliRunner()

#: vectors: mlp encoder and decoder (the default for a vector input), categorical likelihood
VECTOR = """
name: vae-vector
model: vae
input: {{shape: [12], levels: 5}}
latent: 6
encoder: {{hidden: 24, depth: 2, context: {context}}}
decoder: {{hidden: 20, depth: 1}}
likelihood: {likelihood}
posterior: {{kind: iaf, steps: 3, hidden: 10, depth: 2}}
"""
#: an image through mlp networks, with a diagonal posterior (no IAF step)
IMAGE_MLP = """
name: vae-image-mlp
model: vae
input: {shape: [1, 6, 6], levels: 2}
latent: 4
encoder: {kind: mlp, hidden: 16, depth: 1, context: 0}
decoder: {kind: mlp, hidden: 16, depth: 2}
likelihood: bernoulli
posterior: {kind: diagonal}
"""

SPECS = {
    "vae-iaf-digits": lambda: flowspec.load_spec("specs/vae-iaf-digits.yaml"),
    "vae-iaf-mnist": lambda: flowspec.load_spec("specs/vae-iaf-mnist.yaml"),
    "vector-categorical": lambda: flowspec.loads_spec(VECTOR.format(context=4, likelihood="categorical")),
    "vector-logistic-no-context": lambda: flowspec.loads_spec(VECTOR.format(context=0, likelihood="logistic")),
    "image-mlp-diagonal": lambda: flowspec.loads_spec(IMAGE_MLP),
}


def _compiled(name: str):
    torch.manual_seed(0)
    graph = build_vae_graph(SPECS[name]())
    return graph, VAEModel(graph)


def _data(graph, batch: int) -> torch.Tensor:
    return torch.randint(0, graph.spec.input.levels, (batch, *graph.input_shape)).float()


def _counted(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", SPECS)
def test_param_count_equals_the_compiled_model(name):
    graph, model = _compiled(name)
    expected = sum(p.numel() for p in model.parameters())
    assert count_vae_params(graph) == expected
    assert vae_cost_report(graph, FAKE, 2).params == expected
    parts = {part.name: part.cost.params for part in vae_parts(graph)}
    assert parts["encoder"] == sum(p.numel() for p in model.encoder.parameters())
    assert parts["decoder"] == sum(p.numel() for p in model.decoder.parameters())
    for k, step in enumerate(model.iaf):
        assert parts[f"iaf.{k}"] == sum(p.numel() for p in step.parameters())
    assert len(model.iaf) == graph.spec.iaf_steps == sum(1 for n in parts if n.startswith("iaf."))


@pytest.mark.parametrize("name", SPECS)
def test_matmul_flops_equal_the_flop_counter(name):
    """Exactly: FlopCounterMode counts convs, linears and matmuls (2 FLOPs per multiply-add, no
    bias), and so do the rules' ``matmul_flops_*``; a strided conv counts at its output size."""
    graph, model = _compiled(name)
    batch = 3
    x = _data(graph, batch)
    report = vae_cost_report(graph, FAKE, batch)
    forward = sum(row.matmul_flops_forward for row in report.rows)
    sampling = sum(row.matmul_flops_inverse for row in report.rows)
    counted_forward = _counted(lambda: model.elbo(x))
    counted_sampling = _counted(lambda: model.sample(batch))
    assert counted_forward > 0 and counted_sampling > 0
    assert forward == counted_forward
    assert sampling == counted_sampling  # the decoder alone: sampling skips encoder and posterior
    assert all(row.flops_forward >= row.matmul_flops_forward for row in report.rows)


@pytest.mark.parametrize("name", SPECS)
def test_training_activations_equal_what_autograd_saves(name):
    graph, model = _compiled(name)
    model.train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    parameters |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    for batch in (2, 5):  # per example and per call (an IAF's masked weights) terms both checked
        storages: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in parameters:
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        x = _data(graph, batch)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = -model.elbo(x).mean()
        del loss
        report = vae_cost_report(graph, FAKE, batch)
        assert report.train_activation_bytes == sum(storages.values())


def test_rows_times_and_sampling_direction():
    graph, _ = _compiled("vae-iaf-digits")
    report = vae_cost_report(graph, FAKE, 16)
    names = [row.name for row in report.rows]
    assert names == ["encoder", "z0", "iaf.0", "iaf.1", "iaf.2", "iaf.3", "decoder", "likelihood", "prior"]
    rows = {row.name: row for row in report.rows}
    # the encoder and posterior do not run when sampling; the decoder does the same work both ways
    for name in ("encoder", "z0", "iaf.0"):
        assert rows[name].time_inverse == 0 and rows[name].flops_inverse == 0
    assert rows["decoder"].flops_inverse == rows["decoder"].flops_forward > 0
    assert report.time_sample == pytest.approx(sum(rows[n].time_inverse for n in ("decoder", "likelihood", "prior")))
    # the roofline: a latency per op at least, and a training step of forward + backward
    assert all(row.time_forward >= FAKE.latency for row in report.rows)
    assert report.time_train_step == pytest.approx(report.time_forward + report.time_backward)
    assert report.time_backward > report.time_forward
    # the log-det terms: sum(log sigma) of z0 and sum(log sigmoid(s)) of each IAF step
    assert rows["z0"].flops_logdet > 0 and rows["iaf.0"].flops_logdet > 0 and rows["decoder"].flops_logdet == 0
    assert report.max_train_batch > 0
    assert "ELBO pass" in to_markdown(report)


def test_cpu_times_every_conv_and_linear_at_its_own_shape():
    from flowspec.report import measure_cpu
    from flowspec.report.rates import MatmulOp

    graph, _ = _compiled("vae-iaf-digits")
    cpu = measure_cpu(repeats=1)
    report = vae_cost_report(graph, cpu, 4)
    expected = {(op, 4) for part in vae_parts(graph) for op in part.matmuls}
    assert (MatmulOp(1, 32, 3, (4, 4)), 4) in expected  # the encoder's first (stride-2) conv
    assert set(cpu.shape_rates.rates) == expected
    assert all(row.matmul_rate is not None for row in report.rows if row.matmul_flops_forward)


def test_measure_times_every_part():
    report = report_spec(SPECS["vae-iaf-digits"](), FAKE, batch=4, measure=True)
    assert all(row.measured_forward is not None and row.measured_forward > 0 for row in report.rows)
    assert report.measured_train_step > 0


def test_report_cli_prints_the_rows():
    result = runner.invoke(app, ["report", "specs/vae-iaf-digits.yaml"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    # the table (long names are cut to the terminal's width), then the summary lines
    for name in ("z0", "iaf.0", "iaf.3", "prior", "params 56,082", "training step:", "sampling pass:"):
        assert name in result.stdout
    result = runner.invoke(app, ["report", "specs/vae-iaf-digits.yaml", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    rows = [line.split(" | ")[0].strip("| ") for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["encoder", "z0", "iaf.0", "iaf.1", "iaf.2", "iaf.3", "decoder", "likelihood", "prior",
                        "**total**"]
    result = runner.invoke(app, ["report", "specs/vae-iaf-mnist.yaml", "--device", "h100", "--batch", "8",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    graph, model = _compiled("vae-iaf-mnist")
    assert data["params"] == sum(p.numel() for p in model.parameters()) and data["device"] == "h100"
    assert [row["name"] for row in data["rows"]][-3:] == ["decoder", "likelihood", "prior"]
    result = runner.invoke(app, ["report", "specs/vae-iaf-digits.yaml", "--device", "nosuch"])
    assert result.exit_code == 2 and "unknown device 'nosuch'" in result.output
