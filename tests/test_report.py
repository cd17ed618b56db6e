"""The cost report: FLOPs against torch's FlopCounterMode on the compiled model (forward and the
sampling direction), exact parameter counts, the log-det rules of plain vs LU invconv, memory and
roofline bookkeeping, device profiles, and the ``report`` verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import flowspec
from flowspec.compile.condition import random_condition
from flowspec.cli import app
from flowspec.compile.check import narrow_spec
from flowspec.report import (Device, DeviceError, cost_report, count_params, grouped, layer_costs, load_devices, measure_cpu,
                             report_spec, to_json, to_markdown)

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.yaml"))
FLOW_SPECS = [p for p in SPECS if getattr(flowspec.load_spec(p), "model", "flow") == "flow"]
VAE_SPECS = [p for p in SPECS if getattr(flowspec.load_spec(p), "model", "flow") == "vae"]
HVAE_SPECS = [p for p in SPECS if getattr(flowspec.load_spec(p), "model", "flow") == "hvae"]
FAKE = Device("fake", {"float32": 1e12}, 1e11, 8e9)
runner = CliRunner()


def _narrow(path: Path):
    return flowspec.build_graph(narrow_spec(flowspec.load_spec(path), width=8))


def _counted(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("path", FLOW_SPECS, ids=lambda p: p.stem)
def test_matmul_flops_agree_with_flop_counter(path):
    graph = _narrow(path)
    model = flowspec.FlowModel(graph)
    batch = 3
    levels = graph.spec.input.levels
    condition = graph.spec.condition  # conditional specs: a random label / context per example
    if graph.spec.input.continuous:
        x, first = torch.randn(batch, *graph.input_shape), torch.randn(4, *graph.input_shape)
    else:
        x = torch.randint(0, levels, (batch, *graph.input_shape)).float()
        first = torch.randint(0, levels, (4, *graph.input_shape)).float()
    c = random_condition(condition, batch)
    model.initialize(first, condition=random_condition(condition, 4))
    model.train()  # no cached W / W^-1: every call pays its per-call work, as the rules count it
    report = cost_report(graph, FAKE, batch)
    predicted_fwd = sum(r.matmul_flops_forward for r in report.rows)
    predicted_inv = sum(r.matmul_flops_inverse for r in report.rows)
    eps = [torch.randn(batch, *s) for s in graph.latent_shapes]
    with torch.no_grad():
        counted_fwd = _counted(lambda: model.elbo(x, condition=c))  # dequantizer + condition + flow + priors
        counted_inv = _counted(lambda: model.generate(eps, 1.0, c))
    assert counted_fwd > 0 and counted_inv > 0
    assert predicted_fwd == pytest.approx(counted_fwd, rel=0.01)
    assert predicted_inv == pytest.approx(counted_inv, rel=0.01)


@pytest.mark.parametrize("path", FLOW_SPECS, ids=lambda p: p.stem)
def test_param_count_equals_compiled_model(path):
    graph = _narrow(path)
    model = flowspec.FlowModel(graph)
    assert count_params(graph) == sum(p.numel() for p in model.parameters())
    assert cost_report(graph, FAKE, 2).params == count_params(graph)


def test_param_count_of_a_full_size_spec():
    graph = flowspec.build_graph(flowspec.load_spec("specs/glow-digits.yaml"))
    assert count_params(graph) == sum(p.numel() for p in flowspec.FlowModel(graph).parameters()) == 152332


def _row(report, kind: str):
    return next(row for row in report.rows if row.kind == kind)


def _invconv_spec(channels: int, lu: bool):
    return flowspec.loads_spec(f"""
input: {{shape: [{channels}], levels: 256}}
prior: standard
layers:
  - {{kind: invconv, lu: {str(lu).lower()}}}
  - {{kind: coupling, conditioner: {{kind: mlp, hidden: [16]}}}}
""")


def test_plain_invconv_logdet_is_cubic_and_lu_linear():
    plain = _row(cost_report(flowspec.build_graph(_invconv_spec(512, False)), FAKE, 1), "invconv")
    lu = _row(cost_report(flowspec.build_graph(_invconv_spec(512, True)), FAKE, 1), "invconv")
    assert plain.flops_logdet == pytest.approx(2 * 512 ** 3 / 3)
    assert lu.flops_logdet == 512
    plain_small = _row(cost_report(flowspec.build_graph(_invconv_spec(256, False)), FAKE, 1), "invconv")
    assert plain.flops_logdet / plain_small.flops_logdet == pytest.approx(8)  # O(c^3)
    # once per call: the same at any batch
    plain_batch = _row(cost_report(flowspec.build_graph(_invconv_spec(512, False)), FAKE, 64), "invconv")
    assert plain_batch.flops_logdet == plain.flops_logdet


def test_report_flags_where_logdet_dominates():
    many = cost_report(flowspec.build_graph(_invconv_spec(512, False)), FAKE, 1)
    assert _row(many, "invconv").logdet_dominates
    assert any("invconv" in note and "log-det" in note and "lu: true" in note for note in many.notes)
    lu = cost_report(flowspec.build_graph(_invconv_spec(512, True)), FAKE, 1)
    assert not _row(lu, "invconv").logdet_dominates
    images = cost_report(flowspec.build_graph(flowspec.load_spec("specs/glow.yaml")), FAKE, 16)
    assert not any(row.logdet_dominates for row in images.rows)  # few channels, many pixels


def test_memory_and_largest_batch_are_consistent():
    graph = flowspec.build_graph(flowspec.load_spec("specs/glow-digits.yaml"))
    small, large = cost_report(graph, FAKE, 8), cost_report(graph, FAKE, 16)
    assert large.train_activation_bytes == pytest.approx(2 * small.train_activation_bytes)
    assert small.sample_bytes < small.train_bytes
    best = small.max_train_batch
    assert cost_report(graph, FAKE, best).train_bytes <= FAKE.memory < cost_report(graph, FAKE, best + 1).train_bytes


def test_roofline_bottleneck_and_training_step():
    graph = flowspec.build_graph(flowspec.load_spec("specs/glow-digits.yaml"))
    report = cost_report(graph, FAKE, 64)
    kinds = {row.kind: row.bottleneck for row in report.rows}
    assert kinds["coupling"] == "compute" and kinds["actnorm"] == "memory"
    for row in report.rows:
        compute = (row.flops_forward + row.flops_logdet) / FAKE.peak("float32")
        assert row.time_forward == pytest.approx(max(compute, row.bytes_moved / FAKE.bandwidth))
    assert report.time_train_step == pytest.approx(3 * report.time_forward)  # no latency: fwd + 2 x fwd
    slow = Device("slow-launch", FAKE.peak_flops, FAKE.bandwidth, FAKE.memory, latency=1e-3)
    delayed = cost_report(graph, slow, 64)
    for row, base in zip(delayed.rows, report.rows):
        cost = next(c for name, *_, c in layer_costs(graph) if name == row.name)
        assert cost.ops > 0 and row.bottleneck == "latency"
        assert row.time_forward == pytest.approx(base.time_forward + cost.ops * 1e-3)
        assert row.time_backward == pytest.approx(2 * base.time_forward + cost.ops * 1e-3)


def test_device_profiles_and_user_file(tmp_path):
    devices = load_devices()
    assert {"a100", "h100", "h200"} <= set(devices)
    assert devices["h200"].memory > devices["h100"].memory
    extra = tmp_path / "devices.yaml"
    extra.write_text("mygpu: {peak_flops: {float32: 1.0e13}, bandwidth: 5.0e11, memory: 1.6e10}\n")
    assert load_devices(extra)["mygpu"].peak("float32") == 1e13
    assert load_devices(extra)["mygpu"].latency_backward == 0.0  # its forward latency, 0 by default
    extra.write_text("mygpu: {peak_flops: {float32: 1.0e13}, bandwidth: 5.0e11, memory: 1.6e10, "
                     "latency: 5.0e-6, latency_backward: 8.0e-6}\n")
    assert load_devices(extra)["mygpu"].latency_backward == 8e-6
    extra.write_text("broken: {bandwidth: 1}\n")
    with pytest.raises(DeviceError, match="broken: needs peak_flops"):
        load_devices(extra)
    with pytest.raises(DeviceError, match="no peak for dtype float8"):
        devices["a100"].peak("float8")


def test_measure_cpu_gives_positive_rates():
    cpu = measure_cpu(repeats=2)
    assert cpu.peak("float32") > 1e8 and cpu.bandwidth > 1e8 and cpu.memory > 1e8
    assert 0 < cpu.latency < 1e-3
    assert cpu.peak("float32") == max(cpu.measured["matmul_flops"], cpu.measured["conv_flops"])


def test_measure_fills_measured_times():
    spec = narrow_spec(flowspec.load_spec("specs/glow-digits.yaml"), width=8)
    report = report_spec(spec, FAKE, batch=4, measure=True)
    assert all(row.measured_forward is not None and row.measured_forward > 0 for row in report.rows)
    assert report.measured_train_step > 0
    assert "measured / predicted" in to_markdown(report)


@pytest.mark.parametrize("path", VAE_SPECS, ids=lambda p: p.stem)
def test_report_of_a_vae_spec_has_its_parts(path):
    """VAE specs were refused ("works on flow specs"); their rows are checked in test_report_vae.py."""
    report = report_spec(flowspec.load_spec(path), FAKE)
    names = [row.name for row in report.rows]
    assert names[:2] == ["encoder", "z0"] and names[-3:] == ["decoder", "likelihood", "prior"]
    assert report.params > 0 and report.time_train_step > 0


@pytest.mark.parametrize("path", HVAE_SPECS, ids=lambda p: p.stem)
def test_report_of_a_hierarchical_vae_spec_has_its_parts(path):
    """One row per part of the ladder (flowspec/hvae/costs.py); tests/test_hvae.py checks the counts."""
    report = report_spec(flowspec.load_spec(path), FAKE)
    assert [row.name for row in report.rows] == ["bottom-up", "top-down", "iaf", "decoder", "likelihood"]
    assert report.params > 0 and report.time_train_step > 0


def test_report_cli_json_markdown_and_errors(tmp_path):
    result = runner.invoke(app, ["report", "specs/glow-digits.yaml", "--device", "h100", "--batch", "8",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 152332 and data["batch"] == 8 and data["device"] == "h100"
    assert [r["name"] for r in data["rows"]][-1] == "prior"
    result = runner.invoke(app, ["report", "specs/glow-digits.yaml", "--format", "markdown"])
    assert result.exit_code == 0 and "| **total** |" in result.stdout
    result = runner.invoke(app, ["report", "specs/glow-digits.yaml", "--device", "nosuch"])
    assert result.exit_code == 2 and "unknown device 'nosuch'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["report", "specs/glow-digits.yaml", "--format", "table", "--device", "a100"])
    assert result.exit_code == 0 and "largest training batch" in result.stdout
    assert json.loads(to_json(cost_report(_narrow(FLOW_SPECS[0]), FAKE, 2)))["rows"]


def test_grouped_rows_keep_the_totals():
    report = cost_report(flowspec.build_graph(flowspec.load_spec("specs/glow.yaml")), FAKE, 4)
    for detail, expected in (("step", 3 * 32 + 3 + 2 + 2), ("level", 3 + 2)):
        rows = grouped(report, detail).rows
        assert len(rows) == expected  # steps + squeezes + splits, + dequantizer and prior
        for field in ("params", "flops_forward", "flops_inverse", "flops_logdet", "train_bytes", "time_forward"):
            assert sum(getattr(r, field) for r in rows) == pytest.approx(sum(getattr(r, field) for r in report.rows))
    result = runner.invoke(app, ["report", "specs/glow.yaml", "--detail", "level", "--format", "markdown"])
    assert result.exit_code == 0 and "| level2 |" in result.stdout and "level2.step0" not in result.stdout



# full widths (the conditioners' hidden activations dominate, as in real use); glow.yaml's 44M
# parameters, flowpp.yaml's 31M (with attention over 1,024 pixels), glow-celeba.yaml's 169M at
# 256x256, jet-imagenet64.yaml's 207M and tarflow-imagenet64.yaml's 460M are left out for speed and
# memory (flowpp-digits, jet-digits and tarflow-digits cover the same kinds)
FULL_SIZE = [p for p in FLOW_SPECS
             if p.stem not in ("glow", "flowpp", "glow-celeba", "jet-imagenet64", "tarflow-imagenet64")]


@pytest.mark.parametrize("path", FULL_SIZE, ids=lambda p: p.stem)
def test_training_activations_match_the_saved_tensors(path):
    from flowspec.bench.memory import saved_activation_bytes

    graph = flowspec.build_graph(flowspec.load_spec(path))
    model = flowspec.FlowModel(graph)
    if model.invertible_backprop:
        pytest.skip("invertible backprop keeps one layer at a time")
    batch = 2
    c = random_condition(graph.spec.condition, batch)
    if graph.spec.input.continuous:
        x = y = torch.randn(batch, *graph.input_shape)
    else:
        x = torch.randint(0, graph.spec.input.levels, (batch, *graph.input_shape)).float()
        y = x / graph.spec.input.levels - 0.5
    model.initialize(x, condition=c)
    exact = saved_activation_bytes(model, y, lambda v: -model.log_prob(v, condition=c).mean())  # what backward keeps
    report = cost_report(graph, FAKE, batch)
    estimate = sum(r.train_bytes for r in report.rows if r.name != "dequantizer")
    assert estimate == pytest.approx(exact, rel=0.10)


def test_cpu_measures_the_rate_at_the_specs_own_shapes():
    from flowspec.report.rates import MatmulOp, matmul_ops

    graph = flowspec.build_graph(flowspec.load_spec("specs/glow-digits.yaml"))
    coupling = next(n for n in graph.layers if n.kind == "coupling")
    assert matmul_ops(coupling.config, coupling.in_shape) == [
        MatmulOp(2, 64, 3, (4, 4), True), MatmulOp(64, 64, 1, (4, 4), True),
        MatmulOp(64, 4, 3, (4, 4), True)]  # timed channels_last, the layout the conditioner runs in
    cpu = measure_cpu(repeats=1)
    report = cost_report(graph, cpu, 8)
    rates = cpu.shape_rates.rates
    expected = {(op, 8) for n in graph.layers for op in matmul_ops(n.config, n.in_shape)}
    assert set(rates) == expected  # every distinct conv shape of the spec, at the report's batch
    assert set(cpu.shape_rates.backward_rates) == expected
    for table in (rates, cpu.shape_rates.backward_rates):
        assert all(0 < rate < float("inf") and rate <= cpu.peak("float32") for rate in table.values())
    assert cpu.latency_backward >= 0
    row = next(r for r in report.rows if r.name == coupling.name)
    ops = matmul_ops(coupling.config, coupling.in_shape)
    shaped = sum(8 * op.flops() / rates[(op, 8)] for op in ops)  # the measured rates are what it uses
    rest = (row.flops_forward + row.flops_logdet - sum(8 * op.flops() for op in ops)) / cpu.peak("float32")
    assert row.time_forward == pytest.approx(max(shaped + rest, row.bytes_moved / cpu.bandwidth)
                                             + coupling.config.cost(coupling.in_shape).ops * cpu.latency)
    assert row.matmul_rate == pytest.approx(sum(8 * op.flops() for op in ops) / shaped)
    backward = sum(16 * op.flops() / cpu.shape_rates.backward_rates[(op, 8)] for op in ops)
    assert row.time_backward == pytest.approx(max(backward + 2 * rest, 2 * row.bytes_moved / cpu.bandwidth)
                                              + coupling.config.cost(coupling.in_shape).ops * cpu.latency_backward)
    assert report.time_train_step == pytest.approx(report.time_forward + report.time_backward)
    # a datasheet profile has no shape rates: every FLOP at its peak, as before
    assert load_devices()["a100"].shape_rates is None
    assert all(r.matmul_rate is None for r in cost_report(graph, FAKE, 8).rows)


def test_shape_rates_past_the_budget_use_the_nearest_measured_call():
    from flowspec.report.rates import MatmulOp, ShapeRates

    rates = ShapeRates(repeats=1, budget_s=0.0)
    small, large = MatmulOp(4, 4, 1, (4, 4)), MatmulOp(64, 64, 3, (8, 8))
    measured = rates.rate(small, 8, 1e15)  # the first is measured whatever the budget
    assert 0 < measured < float("inf") and set(rates.rates) == {(small, 8)}
    assert rates.rate(large, 8, 1e15) == measured and set(rates.rates) == {(small, 8)}
    assert rates.backward_rate(large, 8, 1e15) == rates.backward_rates[(small, 8)]
    assert ShapeRates(budget_s=-1.0).rate(small, 8, 123.0) == 123.0  # nothing measured: the peak
