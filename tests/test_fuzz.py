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
from hypothesis import HealthCheck, given, settings
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
