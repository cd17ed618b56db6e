"""Typed columns of a table (``input.columns``): every column kind's bijection to the real line passes
the contract (round trip, log-det against the autograd Jacobian's slogdet, inverse log-det = -forward,
in float64), densities integrate to 1 over each domain, the model's figures are the exact
likelihood or the dequantization bound, and a bad table is one line naming row and column."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowspec import SpecError, compile, loads_spec
from flowspec.cli.app import app
from flowspec.columns import COLUMN_KINDS, TypedColumns
from flowspec.columns.bounded import BoundedColumn
from flowspec.columns.categorical import CategoricalColumn
from flowspec.columns.circular import CircularColumn
from flowspec.columns.integer import IntegerColumn
from flowspec.columns.positive import PositiveColumn
from flowspec.columns.real import RealColumn
from flowspec.data import load_data
from flowspec.errors import DataError

runner = CliRunner()

EXAMPLES = [RealColumn(at="0-2"), BoundedColumn(at=1, bounds=[-2, 5]), PositiveColumn(at="0-1"),
            PositiveColumn(at=0, map="softplus"), CircularColumn(at="0-2", bins=5),
            CircularColumn(at=0, bounds=[0, 360]), CategoricalColumn(at="0-1", classes=4),
            IntegerColumn(at=0)]


def _perturbed(config, seed: int = 0):
    torch.manual_seed(seed)
    module = config.build(len(config.columns)).double()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    return module


def test_examples_cover_every_registered_kind():
    assert {config.kind for config in EXAMPLES} == set(COLUMN_KINDS)


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: f"{c.kind}-{c.at}")
def test_column_contract(config):
    module = _perturbed(config)
    n = len(config.columns)
    y = 2.5 * torch.randn(7, n, dtype=torch.float64)
    v, inverse_logdet = module.inverse(y)
    v = v.detach()
    assert config.valid(module.to_data(v).detach().numpy()).all()  # the inverse lands in the domain
    y_back, logdet = module(v)
    torch.testing.assert_close(y_back, y, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-9, rtol=0)
    v_back, _ = module.inverse(module(v)[0])
    torch.testing.assert_close(v_back, v, atol=1e-9, rtol=1e-9)
    for row in range(len(v)):
        jacobian = torch.autograd.functional.jacobian(lambda r: module(r.view(1, n))[0][0], v[row])
        torch.testing.assert_close(logdet[row].sum(), torch.linalg.slogdet(jacobian)[1], atol=1e-9, rtol=1e-9)
    parameters = list(module.parameters())
    assert sum(p.numel() for p in parameters) == config.parameters(n)
    if parameters:  # gradients reach every learned number
        module(v)[1].sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters)


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: f"{c.kind}-{c.at}")
def test_values_outside_the_domain_are_named(config):
    bad = {"bounded": 5.0, "positive": 0.0, "circular": 361.0 if getattr(config, "bounds", [0, 0])[1] == 360 else 4.0,
           "categorical": 4.0, "integer": 1.5}.get(config.kind)
    if bad is None:
        assert config.valid(np.array([-1e300, 0.0, 1e300])).all()
        return
    assert not config.valid(np.array([bad])).any()
    assert f"{bad:g}" in config.problem(bad)


def _density(spec_text: str, grid: torch.Tensor, seed: int = 1):
    model = compile(loads_spec(spec_text)).double()
    torch.manual_seed(seed)
    with torch.no_grad():
        model.log_prob(torch.randn(64, 1, dtype=torch.float64))  # actnorm's init
        for parameter in model.parameters():
            parameter.add_(0.4 * torch.randn_like(parameter))
        model.eval()
        y, logdet = model.columns(grid.view(-1, 1))
        return torch.exp(model.log_prob(y) + logdet)


ONE_COLUMN = """
input: {{shape: [1], data: continuous, columns: [{column}]}}
prior: learned
layers: [actnorm]
"""


@pytest.mark.parametrize("bounds", [None, [0, 360]])
def test_a_circular_columns_density_integrates_to_one_on_the_circle(bounds):
    column = "{kind: circular, at: 0, bins: 6" + (f", bounds: {bounds}" if bounds else "") + "}"
    lo, hi = bounds or (-math.pi, math.pi)
    grid = torch.linspace(lo, hi, 200_001, dtype=torch.float64)
    density = _density(ONE_COLUMN.format(column=column), grid)
    assert abs(torch.trapezoid(density, grid).item() - 1) < 1e-6
    assert (density.max() / density.min()) > 2  # perturbed: not the uniform density


def test_a_bounded_columns_density_integrates_to_one_on_its_interval():
    grid = torch.linspace(-2, 5, 200_001, dtype=torch.float64)[1:-1]
    density = _density(ONE_COLUMN.format(column="{kind: bounded, at: 0, bounds: [-2, 5]}"), grid)
    assert abs(torch.trapezoid(density, grid).item() - 1) < 1e-4


def test_a_categorical_columns_probabilities_sum_to_one_and_bound_each_one():
    """P(k) = int_k^{k+1} p(v) dv sums to 1 over k; exp(E_u log p(k + u)) <= P(k) (Jensen)."""
    text = ONE_COLUMN.format(column="{kind: categorical, at: 0, classes: 3}")
    model = compile(loads_spec(text)).double()
    torch.manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.eval()
    probabilities = []
    with torch.no_grad():
        for k in range(3):
            grid = torch.linspace(k, k + 1, 100_001, dtype=torch.float64)[1:-1]
            y, logdet = model.columns(grid.view(-1, 1))
            probabilities.append(torch.trapezoid(torch.exp(model.log_prob(y) + logdet), grid).item())
            bound = model.elbo(torch.full((4000, 1), float(k), dtype=torch.float64)).mean().item()
            assert bound <= math.log(probabilities[-1]) + 1e-6
    assert abs(sum(probabilities) - 1) < 1e-4


MIXED = """
input:
  shape: [5]
  data: continuous
  columns:
    - {kind: bounded, at: 0, bounds: [0, 1]}
    - {kind: categorical, at: 1, classes: 3}
    - {kind: integer, at: 2}
    - {kind: circular, at: 3, bounds: [0, 360]}
prior: learned
layers:
  - actnorm
  - {kind: maf, hidden: 8, transform: spline}
  - {kind: maf, hidden: 8, order: reversed}
"""


def _table(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0.05, 0.95, rows), rng.integers(0, 3, rows), rng.poisson(4, rows),
                     rng.uniform(0, 360, rows), rng.normal(size=rows)], axis=1)


def test_a_mixed_table_trains_samples_in_its_domains_and_is_checked():
    from flowspec.compile.check import check_spec

    spec = loads_spec(MIXED)
    model = compile(spec)
    x = torch.tensor(_table(256), dtype=torch.float32)
    model.initialize(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.nats_per_dim(x).mean().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.nats_per_dim(x).mean()
        loss.backward()
        optimizer.step()
    assert loss.item() < first
    with torch.no_grad():
        samples = model.to_data_space(model.sample(200)).double().numpy()
    for entry in spec.input.columns:
        assert entry.valid(samples[:, list(entry.columns)]).all(), entry.kind
    assert model.dequantizes and check_spec(spec).ok


def test_importance_weighting_tightens_the_bound_of_discrete_columns():
    """log (1/k) sum_j w_j >= (1/k) sum_j log w_j per example (Jensen), strictly when the draws differ."""
    model = compile(loads_spec(MIXED)).double()
    x = torch.tensor(_table(64), dtype=torch.float64)
    model.initialize(x)
    model.eval()
    with torch.no_grad():
        weights = model.log_weights(x, 16)
    weighted = torch.logsumexp(weights, 1) - math.log(16)
    assert torch.all(weighted > weights.mean(1))
    assert weights.std(1).min() > 0  # the draws differ: the bound is random per call


@pytest.mark.parametrize("yaml, message", [
    ("input: {shape: [3], data: continuous, columns: [{kind: real, at: 0-1}, {kind: integer, at: 1}]}",
     "column 1 is typed twice, by columns[0] and columns[1]"),
    ("input: {shape: [3], data: continuous, columns: [{kind: integer, at: 3}]}",
     "columns[0] (at: 3) reaches column 3, but the table has 3"),
    ("input: {shape: [3], columns: [{kind: integer, at: 0}]}", "they need data: continuous and shape"),
    ("input: {shape: [3], data: continuous, columns: [{kind: bounded, at: 0, bounds: [1, 1]}]}",
     "lo < hi, got [1.0, 1.0]"),
    ("input: {shape: [3], data: continuous, columns: [{kind: categorical, at: 0, classes: 1}]}",
     "greater than or equal to 2"),
    ("input: {shape: [3], data: continuous, columns: [{kind: integer, at: 2-1}]}", "runs backwards"),
    ("input: {shape: [3], data: continuous, columns: [{kind: angle, at: 0}]}", "angle"),
])
def test_bad_column_types_are_located_errors(yaml, message):
    with pytest.raises(SpecError, match=re.escape(message)) as error:
        loads_spec(yaml + "\nprior: standard\nlayers: [actnorm]\n")
    assert "input" in str(error.value)


def _csv(path, rows: np.ndarray, names=("share", "kind", "count", "angle", "value")):
    lines = [",".join(names)] + [",".join(f"{v:g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column, value, message", [
    (0, 1.0, "column 'share' (feature 0): 1 is outside the open interval (0, 1) of a bounded column"),
    (1, 3.0, "column 'kind' (feature 1): 3 is not a category code 0..2 (categorical: 3)"),
    (2, 2.5, "column 'count' (feature 2): 2.5 is not an integer (an integer column)"),
    (3, -10.0, "column 'angle' (feature 3): -10 is outside one turn [0, 360] of a circular column"),
])
def test_a_csv_value_outside_its_type_is_one_line_naming_line_and_column(tmp_path, column, value, message):
    rows = _table(20)
    rows[6, column] = value
    path = _csv(tmp_path / "t.csv", rows)
    spec = loads_spec(MIXED)
    with pytest.raises(DataError) as error:
        load_data("csv", path, (5,), None, columns=spec.input.columns)
    assert str(error.value) == f"{path}:8: {message} (input.columns)"


def test_a_nan_cell_names_line_and_column(tmp_path):
    path = tmp_path / "t.csv"
    text = _csv(path, _table(5)).read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[4], "nan")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"t.csv:4: column 'value': nan is not a finite number"):
        load_data("csv", path, (5,), None, columns=loads_spec(MIXED).input.columns)


def test_arrays_outside_their_type_name_row_and_column(tmp_path):
    rows = _table(30)
    rows[4, 1] = 7
    np.savez(tmp_path / "t.npz", x=rows)
    with pytest.raises(DataError) as error:
        load_data("npz", tmp_path / "t.npz", (5,), None, columns=loads_spec(MIXED).input.columns)
    assert "row" in str(error.value) and "column 1: 7 is not a category code 0..2" in str(error.value)
    rows[4, 1] = 1
    rows[2, 4] = np.nan
    np.savez(tmp_path / "t.npz", x=rows)
    with pytest.raises(DataError, match=r"x holds 1 NaN or inf values \(first in row 2, column 4\)"):
        load_data("npz", tmp_path / "t.npz", (5,), None, columns=loads_spec(MIXED).input.columns)


def test_train_on_a_bad_table_is_one_line_and_exit_2(tmp_path):
    rows = _table(20)
    rows[10, 1] = 5
    data = _csv(tmp_path / "t.csv", rows)
    spec = tmp_path / "mixed.yaml"
    spec.write_text("name: mixed\n" + MIXED + "training: {steps: 2, batch_size: 8}\n")
    result = runner.invoke(app, ["train", str(spec), "--data", "csv", "--data-dir", str(data),
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line]
    assert lines == [f"error: {data}:12: column 'kind' (feature 1): 5 is not a category code 0..2 (categorical: 3) "
                     f"(input.columns)"]


def test_standardize_refuses_typed_columns(tmp_path):
    data = _csv(tmp_path / "t.csv", _table(20))
    with pytest.raises(DataError, match="start the flow with an actnorm layer"):
        load_data("csv", data, (5,), None, columns=loads_spec(MIXED).input.columns, standardize=True)


def test_typed_columns_leave_real_columns_alone():
    columns = TypedColumns(loads_spec(MIXED).input.columns, 5).double()
    v = torch.tensor(_table(8), dtype=torch.float64)
    y, _ = columns(v)
    torch.testing.assert_close(y[:, 4], v[:, 4])
    torch.testing.assert_close(y[:, 2], v[:, 2])  # integer: identity after dequantization


def test_the_report_counts_the_columns_parameters():
    from flowspec import build_graph
    from flowspec.report.costs import count_params

    spec = loads_spec(MIXED)
    model = compile(spec)
    assert count_params(build_graph(spec)) == sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.columns.parameters()) == 3 * 8 + 1


def test_flowspec_check_passes_with_every_column_type():
    from flowspec.compile.check import check_spec

    columns = ", ".join(f"{{kind: {c.kind}, at: {i}" + (", bounds: [0, 360]" if c.kind == "circular" else
                                                        ", bounds: [-1, 2]" if c.kind == "bounded" else
                                                        ", classes: 4" if c.kind == "categorical" else "") + "}"
                        for i, c in enumerate({c.kind: c for c in EXAMPLES}.values()))
    spec = loads_spec(f"input: {{shape: [{len(COLUMN_KINDS)}], data: continuous, columns: [{columns}]}}\n"
                      "prior: standard\nlayers: [actnorm, {kind: maf, hidden: 8, transform: spline}]\n")
    assert {c.kind for c in spec.input.columns} == set(COLUMN_KINDS)
    result = check_spec(spec)
    assert result.ok, result


def test_typed_columns_trace_as_one_graph():
    """Dequantizing and mapping a mixed table reads no tensor in Python (whether a column is discrete
    is fixed at build): the whole map traces as one graph under ``torch.compile(fullgraph=True)``."""
    from torch._dynamo.utils import counters

    columns = TypedColumns([IntegerColumn(at=0), BoundedColumn(at=1, bounds=[0.0, 2.0]), RealColumn(at=2)], 3)
    assert columns.dequantizes
    x = torch.tensor([[3.0, 0.5, -1.0], [0.0, 1.5, 2.0]])

    def mapped(values):
        return columns(columns.dequantize(values))

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    y, logdet = torch.compile(mapped, backend="aot_eager", fullgraph=True)(x)
    torch.manual_seed(0)
    reference = mapped(x)
    torch.testing.assert_close(y, reference[0])
    torch.testing.assert_close(logdet, reference[1])
    assert int(counters["stats"]["unique_graphs"]) == 1 and not counters["graph_break"]
    torch._dynamo.reset()
