"""Fuzzing the front end: whatever the YAML, ``loads_spec`` + ``build_graph`` either succeed or
raise :class:`SpecError` whose every problem names its file and has a message -- never another
exception (no KeyError, TypeError, AttributeError, ... escaping to the user)."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowspec
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
         {"kind": "permute", "order": "shuffle"}]}, "scaling"]},
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
