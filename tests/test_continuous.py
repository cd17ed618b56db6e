"""Continuous data (``input.data: continuous``): exact log-likelihood, no dequantization, nats/dim; the
CLI on continuous and conditional data, and one clear line for every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowspec import SpecError, build_graph, compile, loads_spec
from flowspec.cli.app import app

runner = CliRunner()

SCALING = """
input: {shape: [3], data: continuous}
prior: standard
layers: [scaling]
"""


def normal_log_density(x: torch.Tensor) -> torch.Tensor:
    return (-0.5 * x ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)


def test_an_identity_flow_with_a_standard_normal_prior_is_the_normal_density():
    model = compile(loads_spec(SCALING)).double()
    x = torch.randn(6, 3, dtype=torch.float64) * 3
    torch.testing.assert_close(model.log_prob(x), normal_log_density(x))
    torch.testing.assert_close(model.elbo(x), normal_log_density(x))  # no dequantization, no levels
    torch.testing.assert_close(model.nats_per_dim(x), -normal_log_density(x) / 3)
    torch.testing.assert_close(model.loss_per_dim(x), -normal_log_density(x) / 3)
    assert model.dequantizer is None and model.unit == "nats/dim"


def test_a_scaled_flow_is_the_change_of_variables_of_the_normal():
    """z = x exp(s): log p(x) = log N(x exp(s)) + sum(s), the density of N(0, exp(-2 s))."""
    model = compile(loads_spec(SCALING)).double()
    s = torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64)
    with torch.no_grad():
        model.layers[0].log_scale.copy_(s.view(1, 3))
    x = torch.randn(5, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, torch.exp(-s)).log_prob(x).sum(1)
    torch.testing.assert_close(model.log_prob(x), expected)


def test_continuous_graph_has_no_dequantizer_and_the_report_no_dequantizer_row():
    from flowspec.report import cost_report, load_devices

    graph = build_graph(loads_spec(SCALING))
    assert not any(d.get("cluster") == "dequantizer" for _, d in graph.graph.nodes(data=True))
    report = cost_report(graph, load_devices()["a100"], 8)
    assert [row.name for row in report.rows][0] != "dequantizer"


def test_a_flow_trained_on_a_known_gaussian_reaches_its_entropy():
    """Test NLL within noise of the true entropy H = (D log(2 pi e) + log det Sigma) / 2, and the
    paired estimate of KL(p || model) = E[log p - log model] never below zero by more than its noise."""
    torch.manual_seed(0)
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    cholesky = torch.tensor([[1.5, 0.0], [0.9, 0.4]], dtype=torch.float64)
    truth = torch.distributions.MultivariateNormal(mean, scale_tril=cholesky)
    train, test = truth.sample((2000,)), truth.sample((4000,))
    entropy = float(truth.entropy())
    model = compile(loads_spec("""
input: {shape: [2], data: continuous}
prior: standard
layers:
  - actnorm
  - {kind: maf, hidden: 8, depth: 1, order: natural}
  - {kind: maf, hidden: 8, depth: 1, order: reversed}
""")).double()
    model.initialize(train[:500])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(250):
        optimizer.zero_grad()
        loss = -model.log_prob(train[(step % 4) * 500:(step % 4 + 1) * 500]).mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        nll = -model.log_prob(test)
        gap = nll + truth.log_prob(test)  # log p - log model, per test point
    noise = 3 * float(nll.std()) / math.sqrt(len(test))
    assert abs(float(nll.mean()) - entropy) < noise + 0.01, (float(nll.mean()), entropy, noise)
    paired_noise = 3 * float(gap.std()) / math.sqrt(len(test))
    assert float(gap.mean()) > -paired_noise, (float(gap.mean()), paired_noise)
    assert float(gap.mean()) < 0.02


@pytest.mark.parametrize("input_row, extra, message", [
    ("{shape: [3], data: continuous, levels: 256}", "", "continuous data has no levels"),
    ("{shape: [3], data: real}", "", "input.data: Input should be 'discrete' or 'continuous'"),
    ("{shape: [3], data: continuous}", "dequantization: {kind: variational}\n", "remove dequantization"),
    ("{shape: [3], data: continuous}", "preprocess: {kind: logit}\n", "remove preprocess"),
])
def test_continuous_input_errors(input_row, extra, message):
    text = SCALING.replace("{shape: [3], data: continuous}", input_row) + extra
    with pytest.raises(SpecError, match=message):
        loads_spec(text)


def test_a_continuous_spec_dumps_and_loads_back():
    from flowspec.spec.loader import spec_from_data
    from flowspec.spec.yaml_source import SourceMap

    spec = loads_spec(SCALING + "condition: {kind: vector, dim: 2}\n")
    dumped = spec.model_dump(mode="json")
    assert "levels" not in dumped["input"] and "dequantization" not in dumped
    assert spec_from_data(dumped, SourceMap("<dump>")).model_dump(mode="json") == dumped
    plain = loads_spec("input: {shape: [3]}\nlayers: [scaling]\n").model_dump(mode="json")
    assert "data" not in plain["input"] and "condition" not in plain  # discrete specs dump as before


# -- the CLI on continuous and conditional data ------------------------------------------------------

MOONS = """
name: tiny-moons
input: {shape: [2], data: continuous}
condition: {kind: class, classes: 2, embed: 2}
prior: standard
layers:
  - actnorm
  - {kind: maf, hidden: 8, depth: 1}
training: {batch_size: 200, steps: 6, eval_every: 6, checkpoint_every: 6, sample_every: 6, lr: 0.01}
"""


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moons")
    spec = folder / "moons.yaml"
    spec.write_text(MOONS)
    result = runner.invoke(app, ["train", str(spec), "--data", "moons", "--out", str(folder / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test nats/dim" in result.output
    return folder


def test_eval_reports_nats_per_dim_and_the_test_log_likelihood(moons_run):
    result = runner.invoke(app, ["eval", str(moons_run / "run" / "last.pt")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    nats = float(lines[0].split("test nats/dim ")[1].split()[0])
    assert "on 400 moons examples (conditional, on the test conditions)" in lines[0]
    log_likelihood = float(lines[1].split("test log-likelihood ")[1].split()[0])
    assert log_likelihood == pytest.approx(-2 * nats, abs=2e-4)


def test_sample_writes_the_conditions_beside_vector_samples(moons_run):
    csv = moons_run / "s.csv"
    result = runner.invoke(app, ["sample", str(moons_run / "run" / "last.pt"), "--per-class", "3", "-o", str(csv)])
    assert result.exit_code == 0, result.output
    rows = csv.read_text().splitlines()
    assert rows[0] == "x0,x1,class" and [r.split(",")[2] for r in rows[1:]] == ["0"] * 3 + ["1"] * 3
    npy = moons_run / "s.npy"
    result = runner.invoke(app, ["sample", str(moons_run / "run" / "last.pt"), "--class", "1", "-n", "4", "-o", str(npy)])
    assert result.exit_code == 0, result.output
    assert np.load(npy).shape == (4, 2) and np.load(moons_run / "s.conditions.npy").tolist() == [1] * 4


@pytest.mark.parametrize("args, message", [
    (["--class", "2"], "--class 2 is outside 0..1 (condition.classes: 2)"),
    (["--context", "0.5"], "--context: this model is class-conditional"),
])
def test_bad_sampling_requests_are_one_line(moons_run, args, message):
    result = runner.invoke(app, ["sample", str(moons_run / "run" / "last.pt"), "-o", str(moons_run / "x.npy"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def _train(tmp_path, spec_text: str, data: list[str]):
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    return runner.invoke(app, ["train", str(spec), *data, "--out", str(tmp_path / "run"), "--no-progress"])


def test_a_conditional_spec_fed_data_without_labels_is_one_line(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(50, 2)))
    result = _train(tmp_path, MOONS, ["--data", "npz", "--data-dir", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "condition.classes" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_labels_out_of_range_are_one_line(tmp_path):
    path = tmp_path / "x.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(50, 2)), y=np.full(50, 4))
    result = _train(tmp_path, MOONS, ["--data", "npz", "--data-dir", str(path)])
    assert result.exit_code == 2, result.output
    assert "label 4" in result.output and "condition.classes: 2" in result.output


def test_nan_in_continuous_data_is_one_line(tmp_path):
    path = tmp_path / "x.npz"
    x = np.random.default_rng(0).normal(size=(50, 2))
    x[7, 1] = np.nan
    np.savez(path, x=x, y=np.zeros(50, dtype=np.int64))
    result = _train(tmp_path, MOONS, ["--data", "npz", "--data-dir", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and ("NaN" in result.output or "non-finite" in result.output)


def test_a_context_conditional_spec_fed_contexts_of_the_wrong_width_is_one_line(tmp_path):
    path = tmp_path / "x.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(50, 2)), c=rng.normal(size=(50, 3)))
    spec = MOONS.replace("{kind: class, classes: 2, embed: 2}", "{kind: vector, dim: 2}")
    result = _train(tmp_path, spec, ["--data", "npz", "--data-dir", str(path)])
    assert result.exit_code == 2, result.output
    assert "condition.dim" in result.output and str(path) in result.output


def test_a_discrete_image_spec_is_refused_continuous_data(tmp_path):
    spec = "input: {shape: [2], levels: 16}\nlayers: [scaling]\ntraining: {batch_size: 100, steps: 2}\n"
    result = _train(tmp_path, spec, ["--data", "moons"])
    assert result.exit_code == 2 and "continuous" in result.output and "input.levels" in result.output


def test_train_reads_csv_feature_label_and_context_columns(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["a,b,kind,t"] + [f"{rng.normal():.4f},{rng.normal():.4f},{'dry' if i % 2 else 'wet'},{rng.normal():.3f}"
                             for i in range(120)]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows) + "\n")
    labelled = MOONS.replace("batch_size: 200", "batch_size: 50")
    result = _train(tmp_path, labelled, ["--data", "csv", "--data-dir", str(table), "--features", "a,b",
                                         "--label-column", "kind"])
    assert result.exit_code == 0, result.output
    evaluated = runner.invoke(app, ["eval", str(tmp_path / "run" / "last.pt")])
    assert evaluated.exit_code == 0 and "(conditional, on the test conditions)" in evaluated.output, evaluated.output
    context = labelled.replace("{kind: class, classes: 2, embed: 2}", "{kind: vector, dim: 1}")
    result = runner.invoke(app, ["train", str(_spec(tmp_path, context)), "--data", "csv", "--data-dir", str(table),
                                 "--features", "a,b", "--context-columns", "t", "--out", str(tmp_path / "ctx"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["train", str(_spec(tmp_path, context)), "--data", "csv", "--data-dir", str(table),
                                  "--features", "a,b", "--out", str(tmp_path / "none"), "--no-progress"])
    assert missing.exit_code == 2 and "condition.dim" in missing.output and str(table) in missing.output


def _spec(tmp_path, text: str):
    path = tmp_path / "spec2.yaml"
    path.write_text(text)
    return path


def test_a_context_conditional_run_samples_given_a_context(tmp_path):
    rng = np.random.default_rng(2)
    c = rng.normal(size=(240, 2))
    path = tmp_path / "xc.npz"
    np.savez(path, x=c @ np.array([[1.0, 0.5], [0.0, 1.0]]) + 0.1 * rng.normal(size=(240, 2)), c=c)
    spec = MOONS.replace("{kind: class, classes: 2, embed: 2}", "{kind: vector, dim: 2, hidden: [4]}")
    result = _train(tmp_path, spec, ["--data", "npz", "--data-dir", str(path)])
    assert result.exit_code == 0, result.output
    run = str(tmp_path / "run" / "last.pt")
    csv = tmp_path / "s.csv"
    result = runner.invoke(app, ["sample", run, "--context", "0.5,-1", "-n", "3", "-o", str(csv)])
    assert result.exit_code == 0, result.output
    rows = csv.read_text().splitlines()
    assert rows[0] == "x0,x1,c0,c1" and all(r.endswith(",0.5,-1.0") for r in rows[1:])
    for args, message in ((["--context", "0.5,x"], "expected 2 comma-separated numbers"),
                          (["--context", "0.5"], "expected 2 finite comma-separated numbers (condition.dim: 2)"),
                          (["--class", "1"], "--class: this model is context-conditional (condition.dim: 2)"),
                          ([], "pass --context with 2 comma-separated numbers")):
        result = runner.invoke(app, ["sample", run, "-o", str(tmp_path / "x.npy"), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    evaluated = runner.invoke(app, ["eval", run])
    assert evaluated.exit_code == 0 and "test nats/dim" in evaluated.output, evaluated.output


def test_condition_options_on_an_unconditional_run_are_one_line(tmp_path):
    spec = MOONS.replace("condition: {kind: class, classes: 2, embed: 2}\n", "")
    assert _train(tmp_path, spec, ["--data", "moons"]).exit_code == 0
    result = runner.invoke(app, ["sample", str(tmp_path / "run" / "last.pt"), "--per-class", "2",
                                 "-o", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "--per-class: this model is unconditional" in result.output
