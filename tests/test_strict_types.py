"""Strict types at load time: a boolean is not a count, a string is not a number, a number is not
a boolean. Each case is rejected with one located line naming the field; an integer stays a valid
float, and ``1e-3`` is a number (YAML 1.2), not the string YAML 1.1 makes of it."""

from __future__ import annotations

import pytest

import flowspec
from flowspec.errors import SpecError

BASE = """\
input: {shape: [4, 8, 8]}
levels: 1
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""

# (field written, replacing which line of BASE, path of the error, line)
CASES = [
    ("steps: true", "steps: 2", ("steps",), 3),
    ("steps: '8'", "steps: 2", ("steps",), 3),
    ("levels: 1.5", "levels: 1", ("levels",), 2),
    ("  - {kind: coupling, conditioner: {kind: conv, hidden: true}}",
     "  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}", ("step", 2, "conditioner", "hidden"), 7),
    ('  - {kind: coupling, conditioner: {kind: conv, hidden: "64"}}',
     "  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}", ("step", 2, "conditioner", "hidden"), 7),
    ('  - {kind: invconv, lu: "yes"}', "  - {kind: invconv, lu: true}", ("step", 1, "lu"), 6),
    ("  - {kind: invconv, lu: 1}", "  - {kind: invconv, lu: true}", ("step", 1, "lu"), 6),
    ("  - {kind: coupling, parity: true}", "  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}",
     ("step", 2, "parity"), 7),
    ("input: {shape: [true, 8, 8]}", "input: {shape: [4, 8, 8]}", ("input", "shape", 0), 1),
    ("input: {shape: [4, 8, 8], levels: '256'}", "input: {shape: [4, 8, 8]}", ("input", "levels"), 1),
]


@pytest.mark.parametrize("written, replaces, path, line", CASES, ids=[c[0].strip() for c in CASES])
def test_wrong_types_are_located_errors(tmp_path, written, replaces, path, line):
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE.replace(replaces, written))
    with pytest.raises(SpecError) as caught:
        flowspec.load_spec(spec)
    (problem,) = caught.value.problems
    assert problem.path[:len(path)] == path and problem.line == line and problem.file == str(spec)
    assert "\n" not in str(problem)


def test_repeat_count_is_strict():
    text = "input: {shape: [6]}\nlayers:\n  - repeat: '3'\n    layers: [scaling]\n"
    with pytest.raises(SpecError, match=r"layers\[0\].repeat: Input should be a valid integer"):
        flowspec.loads_spec(text)


def test_training_bf16_literal_is_strict():
    with pytest.raises(SpecError, match=r"training.bf16: .*a number is not a boolean"):
        flowspec.loads_spec(BASE + "training: {bf16: 1}\n")


def test_integers_are_floats_and_exponents_are_numbers():
    spec = flowspec.loads_spec(BASE + "training: {lr: 1e-3, grad_clip: 5, ema: 0}\n"
                               "split: {kind: split}\n")
    assert spec.training.lr == pytest.approx(1e-3) and spec.training.grad_clip == 5.0


def test_yaml_booleans_and_lists_still_load():
    spec = flowspec.loads_spec(BASE.replace("lu: true", "lu: false"))
    assert spec.step[1].lu is False and spec.input.shape == [4, 8, 8]
