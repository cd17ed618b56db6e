"""Fuzzing the front end: whatever the YAML, ``loads_spec`` + ``build_graph`` either succeed or
raise :class:`SpecError` whose every problem names its file and has a message -- never another
exception (no KeyError, TypeError, AttributeError, ... escaping to the user). A mutated spec that
is accepted is also compiled (narrow widths) and run both ways at a tiny batch: nothing accepted
may fail later."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import flowspec
from flowspec.cli.bounds import refuse_oversized
from flowspec.compile.check import narrow_spec
from flowspec.errors import SpecError
from flowspec.graph import build_graph
from flowspec.layers import LAYER_KINDS
from flowspec.spec.models import Spec

FILE = "fuzz.yaml"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

VALID = [
    {"input": {"shape": [1, 8, 8], "levels": 17}, "levels": 2, "steps": 1,
     "step": ["actnorm", {"kind": "invconv", "lu": True},
              {"kind": "coupling", "conditioner": {"kind": "conv", "hidden": 4}}],
     "split": {"kind": "split", "prior": "conditional"}},
    {"input": {"shape": [6]}, "prior": "standard",
     "layers": [{"repeat": 2, "layers": [
         {"kind": "coupling", "transform": "additive", "parity": 0, "conditioner": {"kind": "mlp", "hidden": [4]}},
         {"kind": "permute", "order": "reverse"}]}, "scaling"]},
    {"input": {"shape": [2, 4, 4]}, "dequantization": {"kind": "uniform", "centred": False},
     "layers": [{"kind": "coupling", "mask": "checkerboard", "scale": "exp", "clamp": 2.0,
                 "conditioner": {"kind": "conv", "hidden": 4, "kernel": 1}},
                "squeeze", {"kind": "split", "prior": "standard"}, {"kind": "invconv", "lu": False}]},
]

KINDS = sorted(LAYER_KINDS) + ["conv", "mlp", "uniform", "repeat", "Squeeze", ""]
FIELDS = ["kind", "layers", "repeat", "input", "shape", "levels", "steps", "step", "hidden", "mask",
          "conditioner", "split", "prior", "name", "clamp", "lu", "unknown"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(KINDS + FIELDS),
    st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), inner, max_size=4)),
    max_leaves=12)


def _check(text: str) -> None:
    try:
        spec = flowspec.loads_spec(text, FILE)
        if isinstance(spec, Spec):
            build_graph(spec)
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == FILE and problem.message, problem
            str(problem)  # printable


FUZZ_MEMORY = 64 * 2 ** 20  # what the compiled narrow copy may take; bigger ones are refused as build refuses


def _check_runs(text: str) -> bool:
    """:func:`_check`, then for an accepted flow spec: its narrow copy (conditioner widths <= 4,
    the smallest image its layers accept) passes the memory bound or is refused with a
    SpecError, and compiles and runs forward and inverse at batch 2 with finite, exact results.
    Returns whether the spec ran."""
    _check(text)
    try:
        spec = flowspec.loads_spec(text, FILE)
        if not isinstance(spec, Spec):
            return False
        build_graph(spec)  # accepted
        graph = build_graph(narrow_spec(spec, width=4))
        refuse_oversized(graph, available=FUZZ_MEMORY)
    except SpecError:
        return False
    torch.manual_seed(0)
    model = flowspec.compile(graph).double()
    x = torch.rand(2, *graph.input_shape, dtype=torch.float64)
    with torch.no_grad():
        model.train()
        model.log_prob(x)  # actnorm's data-dependent init, as the first training batch does
        model.eval()
        zs, logdet = model(x)
        x_back, inverse_logdet = model.inverse(zs)
    assert logdet.shape == (2,) and torch.isfinite(logdet).all()
    assert [tuple(z.shape[1:]) for z in zs] == [tuple(s) for s in graph.latent_shapes]
    assert torch.allclose(x_back, x, atol=1e-6), (x_back - x).abs().max()
    assert torch.allclose(inverse_logdet, -logdet, atol=1e-6)
    return True


def _paths(node, prefix=()):
    """Every path into a nested structure of dicts and lists."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _mutate(data, path, action, value):
    data = copy.deepcopy(data)
    if not path:
        return value if action == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "kind" and isinstance(parent[last], dict):
        parent[last]["kind"] = value if isinstance(value, str) else str(value)
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][str(value)] = 1
    else:
        parent[last] = value
    return data


@SETTINGS
@given(st.text(max_size=200))
def test_random_text(text):
    _check(text)


@SETTINGS
@given(st.text(alphabet="{}[]:,-#&*!|>'\"% \n\tabkind0123456789.", max_size=80))
def test_random_yaml_punctuation(text):
    _check(text)


@SETTINGS
@given(values)
def test_random_structures(data):
    _check(yaml.safe_dump(data))


@SETTINGS
@given(st.data())
def test_mutated_valid_specs(data):
    base = data.draw(st.sampled_from(VALID))
    paths = list(_paths(base))
    path = data.draw(st.sampled_from(paths))
    action = data.draw(st.sampled_from(["replace", "delete", "kind", "add"]))
    if action == "delete" and not path:
        action = "replace"
    value = data.draw(values if action == "replace" else st.sampled_from(KINDS + FIELDS))
    mutated = _mutate(base, path, action, value)
    _check(yaml.safe_dump(mutated))


@SETTINGS
@given(st.data())
def test_several_mutations(data):
    mutated = data.draw(st.sampled_from(VALID))
    for _ in range(data.draw(st.integers(2, 4))):
        paths = list(_paths(mutated))[1:] or [()]
        path = data.draw(st.sampled_from(paths))
        mutated = _mutate(mutated, path, "replace", data.draw(values))
        if not isinstance(mutated, dict):
            break
    _check(yaml.safe_dump(mutated))


WORDS = ["affine", "additive", "channel", "checkerboard", "sigmoid", "exp", "reverse", "shuffle",
         "conditional", "standard", "learned", "logistic", "conv", "mlp"] + sorted(LAYER_KINDS)
ROWS = ["actnorm", "squeeze", "scaling", {"kind": "invconv", "lu": False},
        {"kind": "coupling", "conditioner": {"kind": "conv", "hidden": 3, "kernel": 3}},
        {"kind": "coupling", "transform": "additive", "conditioner": {"kind": "mlp", "hidden": [5]}},
        {"kind": "split", "prior": "standard"},
        {"repeat": 2, "layers": ["actnorm", {"kind": "permute", "order": "shuffle"}]}]


def _like(value):
    """Values of the same type as ``value``, as a user editing that field could write: most
    mutations drawn from these are accepted, and must then run."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(0, 9)
    if isinstance(value, float):
        return st.floats(0.0, 6.0)
    if isinstance(value, str):
        return st.sampled_from(WORDS)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return st.lists(st.integers(1, 9), min_size=1, max_size=3)
    if isinstance(value, list):
        return st.lists(st.sampled_from(ROWS), min_size=1, max_size=4)
    return st.sampled_from(ROWS)


def _mutated_spec_runs(data) -> None:
    mutated = data.draw(st.sampled_from(VALID))
    for _ in range(data.draw(st.integers(1, 2))):
        paths = list(_paths(mutated))[1:] or [()]
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["like"] * 4 + ["replace", "delete", "kind", "add"]))
        if action == "like":
            action, value = "replace", data.draw(_like(_node_at(mutated, path)))
        else:
            value = data.draw(values if action == "replace" else st.sampled_from(KINDS + FIELDS))
        mutated = _mutate(mutated, path, action, value)
        if not isinstance(mutated, dict):
            break
    _check_runs(yaml.safe_dump(mutated))


def _node_at(data, path):
    for part in path:
        data = data[part]
    return data


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_accepted_mutations_compile_and_run(data):
    _mutated_spec_runs(data)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_accepted_mutations_compile_and_run_many(data):
    _mutated_spec_runs(data)


def test_valid_bases_compile_and_run():
    assert all(_check_runs(yaml.safe_dump(base)) for base in VALID)


def test_valid_bases_are_valid():
    for base in VALID:
        build_graph(flowspec.loads_spec(yaml.safe_dump(base), FILE))


def test_huge_shapes_validate_without_allocating():
    """Validation is a pure function of shapes: a huge channel count is no memory error."""
    for channels in (4096, 3_000_000, 2 ** 70):
        text = f"input: {{shape: [{channels}, 2, 2]}}\nlayers: [{{kind: invconv, lu: false}}, squeeze]\n"
        graph = build_graph(flowspec.loads_spec(text, FILE))
        assert graph.output_shape == (4 * channels, 1, 1)


def test_control_character_is_a_located_spec_error():
    try:
        flowspec.loads_spec("input: {shape: [4]}\nlayers: [sca\x1fling]\n", FILE)
    except SpecError as error:
        (problem,) = error.problems
        assert (problem.line, problem.column) == (2, 13) and "#x001f" in problem.message
    else:
        raise AssertionError("a control character was accepted")


# ---- the command line's other inputs: --set values, latent files, CSV tables ---------------------
# Each accepted input is run through its verb (`check`, `decode`, `train`); each refused one is
# exit 2 with located lines and no traceback. The default budgets are small; the slow ones are large.

import functools  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from flowspec.cli import app  # noqa: E402
from flowspec.errors import dotted  # noqa: E402

CLI = CliRunner()
LOCATED_LINE = re.compile(r"^(--set \S.*|\S+:\d+:\d+|error): ")


def _cli(*args):
    result = CLI.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and "Traceback" not in result.stderr, result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.stderr)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and all(LOCATED_LINE.match(line) for line in lines), result.stderr
    return result


@functools.lru_cache(maxsize=None)
def _workspace() -> Path:
    """Files shared by the fuzz cases below (made once: hypothesis repeats a test body many times)."""
    folder = Path(tempfile.mkdtemp(prefix="flowspec-fuzz-"))
    (folder / "image.yaml").write_text(yaml.safe_dump(VALID[0]))
    (folder / "plane.yaml").write_text("input: {shape: [2], data: continuous}\n"
                                       "layers: [actnorm, {kind: coupling, conditioner: {kind: mlp, hidden: [4]}}]\n"
                                       "training: {batch_size: 4, eval_every: 1, sample_every: 100}\n")
    from flowspec.compile.export import save_model

    spec = flowspec.loads_spec("input: {shape: [1, 8, 8], levels: 17}\n"
                               "layers: [squeeze, actnorm, {kind: coupling, conditioner: {kind: conv, hidden: 4}}]\n")
    save_model(flowspec.compile(spec), folder / "model.pt")
    assert _cli("encode", folder / "model.pt", "--data", "digits", "--index", "1,2", "-o",
                folder / "latents.npz", "--no-progress").exit_code == 0
    return folder


SET_PATHS = [dotted(path) for path in _paths(VALID[0]) if path] + ["training.lr", "training.temperature",
                                                                     "training.batch_size", "name", "nowhere.x"]
set_values = st.one_of(
    st.builds(lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("..."), values),
    st.sampled_from([".inf", "-.inf", ".nan", "1e400", "&a [*a]", "{a: &x [1, 2], b: *x}", ":100:", "[bold]x",
                     "0", "-1", "2", "4", "16", "null", "''", "true", "actnorm", "'²'", "1e308"]),
    st.text(alphabet="{}[]:,-#&*!|>'\"% abkind0123456789.e", max_size=30))


def _set_runs(path: str, value: str) -> None:
    spec = _workspace() / "image.yaml"
    override = f"{path}={value}"
    result = _cli("expand", spec, "--set", override)
    event("accepted" if result.exit_code == 0 else "refused")
    if result.exit_code == 0:  # accepted: the expanded spec compiles and runs both ways, exactly
        _check_runs(result.stdout)


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@st.composite
def overrides(draw) -> tuple[str, str]:
    """A path into the base spec (or a few elsewhere) and a value: mostly one of the field's own
    type, as a user would write it (most are accepted and must run), else anything."""
    paths = [path for path in _paths(VALID[0]) if path]
    if draw(st.integers(0, 4)):
        path = draw(st.sampled_from(paths))
        return dotted(path), _flow(draw(_like(_node_at(VALID[0], path))))
    return draw(st.sampled_from(SET_PATHS)), draw(set_values)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_set_values_are_accepted_and_run_or_refused_in_located_lines(override):
    _set_runs(*override)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_set_values_many(override):
    _set_runs(*override)


DTYPES = ["float32", "float64", "float16", "int8", "int64", "uint8", "bool", "complex64", "<U3", "object"]


@st.composite
def latent_files(draw) -> dict:
    """A latents file of the workspace's model, one part changed: dtype, shape, values, log_density,
    identity, or an extra latent."""
    base = dict(np.load(_workspace() / "latents.npz"))
    z = base["z0"]
    part = draw(st.sampled_from(["dtype", "shape", "values", "density", "identity", "extra", "none"]))
    if part == "dtype":
        kind = draw(st.sampled_from(DTYPES))
        base["z0"] = np.array([["a"]], dtype=object) if kind == "object" else z.astype(kind)
    elif part == "shape":
        shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=5))
        base["z0"] = np.zeros(shape, dtype=np.float32)
    elif part == "values":
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, 0.0, 50.0]))
        flat = z.copy().reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = value
        base["z0"] = flat.reshape(z.shape)
    elif part == "density":
        base["log_density"] = draw(st.sampled_from([np.zeros(0), np.zeros(2), np.zeros((2, 1)), np.array(["a", "b"]),
                                                    np.array([np.nan, 1.0])]))
    elif part == "identity":
        key = draw(st.sampled_from(["format", "fingerprint", "spec_name"]))
        base[key] = draw(st.sampled_from([np.array("x"), np.array(3), np.array(["a", "b"]), np.array("")]))
    elif part == "extra":
        base["z1"] = draw(st.sampled_from([z, z[:1], np.zeros((2, 3))]))
    return base


def _latents_run(arrays: dict) -> None:
    folder = Path(tempfile.mkdtemp(dir=_workspace()))
    path, out = folder / "fuzzed.npz", folder / "decoded.png"
    np.savez(path, **arrays)
    result = _cli("decode", _workspace() / "model.pt", path, "-o", out)
    event("accepted" if result.exit_code == 0 else "refused")
    if result.exit_code == 0:  # accepted: decoded into levels of the model's range
        levels = np.load(out.with_suffix(".npy"))
        assert levels.shape[1:] == (1, 8, 8) and levels.min() >= 0 and levels.max() <= 16
    else:
        assert not out.exists()


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(latent_files())
def test_latent_files_decode_or_are_refused_in_one_line(arrays):
    _latents_run(arrays)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(latent_files())
def test_latent_files_many(arrays):
    _latents_run(arrays)


cells = st.one_of(st.floats(-5, 5).map(repr), st.integers(-3, 3).map(str),
                  st.sampled_from(["nan", "inf", "-inf", "1e400", "", " ", "x", "1,5", '"2"', "٣", "99999999999999999999999"]))


@st.composite
def csv_tables(draw) -> str:
    """A small table: mostly two numeric columns (what the 2-D spec reads), some cells, names or
    row widths hostile."""
    header = draw(st.sampled_from([["a", "b"], ["a", "a"], ["a", "b", "c"], ["a"], ["", "b"], [" a", "b "]]))
    rows = draw(st.lists(st.lists(st.floats(-3, 3).map(repr), min_size=len(header), max_size=len(header)),
                         min_size=0, max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        if rows:
            row = draw(st.integers(0, len(rows) - 1))
            action = draw(st.sampled_from(["cell", "width"]))
            if action == "cell":
                rows[row][draw(st.integers(0, len(header) - 1))] = draw(cells)
            else:
                rows[row] = rows[row] + ["1"] if draw(st.booleans()) else rows[row][:-1]
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer).writerows([header] + rows)
    return buffer.getvalue()


def _table_runs(text: str) -> None:
    folder = Path(tempfile.mkdtemp(dir=_workspace()))
    table = folder / "table.csv"
    table.write_text(text)
    result = _cli("train", _workspace() / "plane.yaml", "--data", "csv", "--data-dir", table, "--steps", "1",
                  "--out", folder / "run", "--no-progress")
    event("accepted" if result.exit_code == 0 else "refused")
    if result.exit_code == 0:  # accepted: one step trained and a finite test figure
        assert (folder / "run" / "last.pt").is_file() and "test nats/dim" in result.output


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(csv_tables())
def test_csv_tables_train_or_are_refused_in_one_line(text):
    _table_runs(text)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(csv_tables())
def test_csv_tables_many(text):
    _table_runs(text)
