"""Invalid specs: each must raise one SpecError whose problem names the message, the field path
and the YAML line (and the file). Written to temporary files and loaded like a user's spec."""

from __future__ import annotations

import pytest

import flowspec
from flowspec.errors import SpecError


def _load(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path, flowspec.build_graph(flowspec.load_spec(path))


# (id, YAML text, message regex, field path, line)
CASES = [
    ("unknown-kind", """\
input: {shape: [1, 8, 8]}
layers:
  - actnorm
  - {kind: actnrm}
""", r"unknown kind 'actnrm'.*did you mean 'actnorm'", ("layers", 1, "kind"), 4),
    ("unknown-shorthand-kind", """\
input: {shape: [1, 8, 8]}
layers:
  - sqeeze
""", r"unknown kind 'sqeeze'.*did you mean 'squeeze'", ("layers", 0), 3),
    ("unknown-layer-field", """\
input: {shape: [1, 8, 8]}
layers:
  - squeeze
  - kind: coupling
    condtioner: {kind: conv}
""", r"unknown field 'condtioner'.*did you mean 'conditioner'", ("layers", 1, "condtioner"), 5),
    ("unknown-top-field", """\
input: {shape: [1, 8, 8]}
prior: learned
layres: [actnorm]
""", r"unknown field 'layres'.*did you mean 'layers'", ("layres",), 3),
    ("unknown-field-in-repeat", """\
input: {shape: [4]}
layers:
  - repeat: 2
    layers:
      - scaling
      - {kind: permute, ordre: shuffle}
""", r"unknown field 'ordre'.*did you mean 'order'", ("layers", 0, "layers", 1, "ordre"), 6),
    ("unknown-conditioner-kind", """\
input: {shape: [2, 8, 8]}
layers:
  - kind: coupling
    conditioner: {kind: cnv}
""", r"unknown kind 'cnv'.*did you mean 'conv'", ("layers", 0, "conditioner", "kind"), 4),
    ("layer-without-kind", """\
input: {shape: [2, 8, 8]}
layers:
  - {transform: affine}
""", r"each layer needs a kind", ("layers", 0), 3),
    ("missing-input", """\
levels: 2
steps: 1
step: [actnorm]
""", r"missing field 'input'", ("input",), 1),
    ("missing-input-shape", """\
name: x
input:
  levels: 256
layers: [scaling]
""", r"missing field 'shape'", ("input", "shape"), 2),
    ("bad-input-levels", """\
input:
  shape: [1, 8, 8]
  levels: 1
layers: [actnorm]
""", r"greater than or equal to 2", ("input", "levels"), 3),
    ("compact-levels-zero", """\
input: {shape: [1, 8, 8]}
levels: 0
steps: 1
step: [actnorm]
""", r"greater than or equal to 1", ("levels",), 2),
    ("compact-levels-not-an-int", """\
input: {shape: [1, 8, 8]}
levels: 2
steps: two
step: [actnorm]
""", r"valid integer", ("steps",), 3),
    ("two-dimensional-shape", """\
input:
  shape: [8, 8]
layers: [actnorm]
""", r"not \[H, W\].*\[1, H, W\]", ("input", "shape"), 2),
    ("shape-not-a-list", """\
input: {shape: 1x8x8}
layers: [actnorm]
""", r"valid list", ("input", "shape"), 1),
    ("zero-in-shape", """\
input: {shape: [0, 8, 8]}
layers: [actnorm]
""", r"greater than 0", ("input", "shape", 0), 1),
    ("squeeze-odd-size", """\
input: {shape: [1, 7, 8]}
layers:
  - actnorm
  - squeeze
""", r"squeeze needs even height and width, got 7x8", ("layers", 1), 4),
    ("squeeze-on-vector", """\
input: {shape: [16]}
layers:
  - squeeze
""", r"squeeze needs an image input", ("layers", 0), 3),
    ("too-many-levels", """\
input: {shape: [1, 8, 8]}
levels: 4
steps: 1
step: [actnorm]
""", r"squeeze needs even height and width", ("levels",), 2),
    ("split-on-one-channel", """\
input: {shape: [1, 8, 8]}
layers:
  - actnorm
  - split
""", r"split needs at least 2 channels", ("layers", 1), 4),
    ("coupling-on-one-channel", """\
input: {shape: [1, 8, 8]}
layers:
  - {kind: coupling, mask: channel}
""", r"channel mask needs at least 2 channels", ("layers", 0, "mask"), 3),
    ("coupling-on-one-feature", """\
input: {shape: [1]}
layers:
  - {kind: coupling, conditioner: {kind: mlp}}
""", r"channel mask needs at least 2 features", ("layers", 0, "mask"), 3),
    ("checkerboard-on-vector", """\
input: {shape: [6]}
layers:
  - kind: coupling
    mask: checkerboard
    conditioner: {kind: mlp}
""", r"checkerboard mask needs an image", ("layers", 0, "mask"), 4),
    ("conv-conditioner-on-vector", """\
input: {shape: [6]}
layers:
  - scaling
  - kind: coupling
    conditioner: {kind: conv, hidden: 8}
""", r"conv conditioner needs an image input", ("layers", 1, "conditioner", "kind"), 5),
    ("mlp-conditioner-on-image", """\
input: {shape: [2, 4, 4]}
layers:
  - kind: coupling
    conditioner:
      kind: mlp
""", r"mlp conditioner works on vectors", ("layers", 0, "conditioner", "kind"), 5),
    ("invconv-on-one-channel", """\
input: {shape: [1, 4, 4]}
layers:
  - {kind: invconv}
""", r"invconv on 1 channel", ("layers", 0), 3),
    ("permute-on-one-channel", """\
input: {shape: [1, 4, 4]}
layers:
  - actnorm
  - permute
""", r"permute needs at least 2 channels", ("layers", 1), 4),
    ("exp-scale-clamp-zero", """\
input: {shape: [2, 4, 4]}
layers:
  - kind: coupling
    scale: exp
    clamp: 0
""", r"clamp must be in \(0, 50\)", ("layers", 0, "clamp"), 5),
    ("dropout-under-invertible-backprop", """\
input: {shape: [4, 4, 4]}
memory: {invertible_backprop: true}
layers:
  - {kind: coupling, conditioner: {kind: gated, hidden: 8, blocks: 1, heads: 2, dropout: 0.1}}
""", r"invertible backprop re-runs it", ("layers", 0, "conditioner", "dropout"), 4),
    ("exp-scale-clamp-negative", """\
input: {shape: [2, 4, 4]}
layers:
  - {kind: coupling, scale: exp, clamp: -1.5}
""", r"clamp must be in \(0, 50\)", ("layers", 0, "clamp"), 3),
    ("layers-and-levels", """\
input: {shape: [1, 8, 8]}
layers: [squeeze]
levels: 2
""", r"either layers or the compact form.*levels given with layers", (), 1),
    ("compact-form-missing-steps", """\
input: {shape: [1, 8, 8]}
levels: 2
step: [actnorm]
""", r"compact form needs levels, steps and step; missing steps", (), 1),
    ("no-layers-at-all", """\
input: {shape: [4]}
prior: standard
""", r"needs layers, or levels \+ steps \+ step", (), 1),
    ("empty-layers", """\
input: {shape: [1, 8, 8]}
layers: []
""", r"layers is empty", (), 1),
    ("empty-step", """\
input: {shape: [1, 8, 8]}
levels: 1
steps: 1
step: []
""", r"at least 1 item", ("step",), 4),
    ("repeat-zero", """\
input: {shape: [4]}
layers:
  - repeat: 0
    layers: [scaling]
""", r"greater than 0", ("layers", 0, "repeat"), 3),
    ("steps-zero", """\
input: {shape: [1, 8, 8]}
levels: 1
steps: 0
step: [actnorm]
""", r"greater than or equal to 1", ("steps",), 3),
    ("yaml-syntax-error", """\
input: {shape: [1, 8, 8]}
layers:
  - {kind: actnorm
  - squeeze
""", r"invalid YAML.*flow mapping.*opens at line 3", (), 5),
    ("yaml-mapping-in-value", """\
input: {shape: [4]}
layers:
  - kind: scaling: 2
""", r"invalid YAML: mapping values are not allowed here", (), 3),
    ("yaml-bad-indentation", """\
input:
  shape: [4]
 layers: [scaling]
""", r"invalid YAML", (), 3),
    ("duplicate-key", """\
input: {shape: [1, 8, 8]}
layers: [actnorm]
input: {shape: [2, 8, 8]}
""", r"duplicate key 'input'", ("input",), 3),
    ("root-is-a-list", """\
- actnorm
- squeeze
""", r"a spec is a YAML mapping, got list", (), 1),
    ("root-is-a-string", """\
just words
""", r"a spec is a YAML mapping, got str", (), 1),
    ("empty-file", "", r"the file is empty", (), 1),
    ("comment-only-file", "# nothing here\n", r"the file is empty", (), 1),
    ("bool-not-a-bool", """\
input: {shape: [2, 8, 8]}
layers:
  - {kind: invconv, lu: maybe}
""", r"valid boolean", ("layers", 0, "lu"), 3),
    ("string-for-int", """\
input: {shape: [2, 8, 8]}
layers:
  - kind: coupling
    conditioner: {kind: conv, hidden: wide}
""", r"valid integer", ("layers", 0, "conditioner", "hidden"), 4),
    ("negative-hidden", """\
input: {shape: [2, 8, 8]}
layers:
  - kind: coupling
    conditioner: {kind: conv, hidden: -4}
""", r"greater than 0", ("layers", 0, "conditioner", "hidden"), 4),
    ("negative-mlp-hidden", """\
input: {shape: [4]}
layers:
  - kind: coupling
    conditioner:
      kind: mlp
      hidden: [16, -16]
""", r"greater than 0", ("layers", 0, "conditioner", "hidden", 1), 6),
    ("empty-mlp-hidden", """\
input: {shape: [4]}
layers:
  - {kind: coupling, conditioner: {kind: mlp, hidden: []}}
""", r"at least 1 item", ("layers", 0, "conditioner", "hidden"), 3),
    ("kernel-too-large", """\
input: {shape: [2, 8, 8]}
layers:
  - kind: coupling
    conditioner: {kind: conv, kernel: 9}
""", r"less than or equal to 7", ("layers", 0, "conditioner", "kernel"), 4),
    ("bad-parity", """\
input: {shape: [4]}
layers:
  - {kind: coupling, parity: 2, conditioner: {kind: mlp}}
""", r"0, 1 or 'alternate'", ("layers", 0, "parity"), 3),
    ("bad-prior", """\
input: {shape: [4]}
prior: gaussian
layers: [scaling]
""", r"unknown kind 'gaussian' .*known: learned, learned_channel, logistic, mog, standard", ("prior",), 2),
    ("layers-not-a-list", """\
input: {shape: [4]}
layers: scaling
""", r"valid list", ("layers",), 2),
    ("unknown-model", """\
model: flw
input: {shape: [4]}
layers: [scaling]
""", r"unknown model 'flw'.*did you mean 'flow'", ("model",), 1),
    ("unknown-dequantization", """\
input: {shape: [4]}
dequantization: {kind: unifrom}
layers: [scaling]
""", r"unknown kind 'unifrom'.*did you mean 'uniform'", ("dequantization", "kind"), 2),
    ("bad-split-prior", """\
input: {shape: [1, 8, 8]}
levels: 2
steps: 1
step: [actnorm]
split: {prior: learnt}
""", r"'conditional' or 'standard'", ("split", "prior"), 5),
]


@pytest.mark.parametrize("text, pattern, path, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec(tmp_path, text, pattern, path, line):
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, text)
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.file == str(tmp_path / "spec.yaml")
    text_of_problem = problem.message + (f" (hint: {problem.hint})" if problem.hint else "")
    assert caught.match(pattern) or __import__("re").search(pattern, text_of_problem), str(problem)
    assert problem.path == path, str(problem)
    assert problem.line == line, str(problem)
    assert problem.column is not None and problem.column >= 1
    # the printed form is file:line:col: field.path: message
    assert str(problem).startswith(f"{problem.file}:{line}:{problem.column}: ")


def test_there_are_enough_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_too_many_levels_hint_says_how_many_fit(tmp_path):
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, "input: {shape: [1, 12, 8]}\nlevels: 3\nsteps: 1\nstep: [actnorm]\n")
    (problem,) = caught.value.problems
    assert "at most 2 fit" in problem.hint and "12x8" in problem.hint


def test_unknown_kind_lists_every_known_kind(tmp_path):
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, "input: {shape: [4]}\nlayers: [{kind: zzz}]\n")
    hint = caught.value.problems[0].hint
    for kind in flowspec.layers.LAYER_KINDS:
        assert kind in hint


def test_several_independent_problems_reported_at_once(tmp_path):
    text = """\
input: {shape: [1, 8, 8]}
layers:
  - {kind: coupling, mask: channel}
  - {kind: invconv}
  - squeeze
  - {kind: coupling, conditioner: {kind: mlp}}
  - {kind: split}
  - squeeze
  - squeeze
  - squeeze
"""
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, text)
    found = [(p.path, p.line) for p in caught.value.problems]
    # a broken layer passes its input shape on, so the later layers are still checked
    assert found == [(("layers", 0, "mask"), 3), (("layers", 1), 4),
                     (("layers", 3, "conditioner", "kind"), 6), (("layers", 7), 10)], found
    assert "got 1x1" in str(caught.value)


def test_several_field_problems_reported_at_once(tmp_path):
    text = """\
input: {shape: [1, 8, 8], levels: 0}
prior: learnt
layers:
  - {kind: actnorm, scale: 2}
  - {kind: coupling, parity: 3}
  - {kind: nope}
"""
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, text)
    found = [(p.path, p.line) for p in caught.value.problems]
    assert found == [(("input", "levels"), 1), (("prior",), 2), (("layers", 0, "scale"), 4),
                     (("layers", 1, "parity"), 5), (("layers", 2, "kind"), 6)], found
    lines = str(caught.value).splitlines()
    assert len(lines) == 5 and all(line.startswith(str(tmp_path / "spec.yaml") + ":") for line in lines)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        flowspec.load_spec(tmp_path / "nope.yaml")


def test_shape_error_is_a_spec_error(tmp_path):
    with pytest.raises(flowspec.ShapeError):
        _load(tmp_path, "input: {shape: [1, 8, 8]}\nlayers: [split]\n")
