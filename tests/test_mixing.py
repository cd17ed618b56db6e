"""The mixing check (every entry is made to depend on other entries), ``parity: alternate`` in
repeated rows, and the ``columns`` mask (Flow++'s checkerboard split)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import ShapeError
from flowspec.layers.coupling import CouplingConfig
from flowspec.spec.expand import expand

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
runner = CliRunner()
FIX = "parity: alternate    # 0, 1, 0: Flow++ swaps the halves after every coupling"


def _graph(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return flowspec.build_graph(flowspec.load_spec(path))


@pytest.mark.parametrize("name", ["flowpp", "flowpp-digits"])
def test_the_flowpp_specs_before_the_fix_are_warned_at_their_last_block(name, tmp_path):
    """The shipped Flow++ specs once ended with ``repeat: 3`` of a checkerboard coupling at
    ``parity: 0``: the 1x1 convolution between mixes channels, not pixels, so the odd pixels pass
    the whole block unchanged. The check names the coupling's row and both copies it warns on."""
    fixed = (ROOT / "specs" / f"{name}.yaml").read_text()
    assert FIX in fixed
    broken = fixed.replace(FIX, "parity: 0")
    path = tmp_path / f"{name}.yaml"
    path.write_text(broken)
    graph = flowspec.build_graph(flowspec.load_spec(path))
    last_block = max(i for i, line in enumerate(broken.splitlines(), 1) if "- kind: coupling" in line)
    assert [w.line for w in graph.warnings] == [last_block, last_block]  # the 2nd and 3rd copies
    assert all(w.path == ("layers", 8, "layers", 2) and w.file == str(path) for w in graph.warnings)
    assert "left unchanged, so they pass both couplings unchanged" in graph.warnings[0].message
    assert "parity: alternate" in graph.warnings[0].hint
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(lines) == 2 and all(line.startswith(f"{path}:{last_block}:9: warning: layers[8].layers[2]: ")
                                   for line in lines), result.stderr


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_specs_have_no_mixing_warning(path):
    graph = flowspec.build_graph(flowspec.load_spec(path))
    assert getattr(graph, "warnings", []) == []


def test_entries_no_coupling_ever_transforms_are_an_error(tmp_path):
    """Couplings that all transform the first half, with nothing between that moves entries: the
    second half is modelled by the prior alone. An error at the last coupling's line."""
    text = """\
input: {shape: [6], data: continuous}
layers:
  - {kind: coupling, transform: additive, conditioner: {kind: mlp, hidden: [8]}}
  - actnorm
  - {kind: coupling, transform: additive, conditioner: {kind: mlp, hidden: [8]}}
"""
    with pytest.raises(ShapeError) as caught:
        _graph(tmp_path, text)
    [problem] = caught.value.problems
    assert problem.line == 5 and problem.path == ("layers", 2)
    assert "3 of the 6 entries of the top latent are never transformed" in problem.message
    result = runner.invoke(app, ["validate", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and "spec.yaml:5:" in result.stderr
    # a permutation between them fixes it, as swapping the parity does
    assert _graph(tmp_path, text.replace("  - actnorm\n", "  - permute\n")).warnings == []
    second = "  - {kind: coupling, transform: additive, conditioner: {kind: mlp, hidden: [8]}}\n"
    assert text.endswith(second)
    assert _graph(tmp_path, text[:-len(second)] + second.replace("additive,", "additive, parity: 1,")).warnings == []


def test_a_single_coupling_is_a_warning_and_a_flow_of_linear_layers_is_not_checked(tmp_path):
    [warning] = _graph(tmp_path, "input: {shape: [4], data: continuous}\n"
                                 "layers: [{kind: coupling, conditioner: {kind: mlp}}]\n").warnings
    assert "2 of the 4 entries of the top latent are never transformed" in warning.message
    assert _graph(tmp_path, "input: {shape: [4], data: continuous}\nlayers: [actnorm, invconv]\n").warnings == []


def test_a_split_under_a_conditional_prior_is_a_warning_and_levels_are_checked_between_splits(tmp_path):
    text = """\
input: {shape: [1, 4, 4], levels: 17}
layers:
  - squeeze
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
  - {kind: split, prior: PRIOR}
  - invconv
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""
    graph = _graph(tmp_path, text.replace("PRIOR", "conditional"))
    first, second = graph.warnings
    assert first.line == 5 and "8 of the 8 entries of the latent 2.split (split) factors out are never" in first.message
    assert "conditional prior alone relates them" in first.message
    # the top latent: its entries were all transformed before the split, half of them not since
    assert second.line == 7 and "4 of the 8 entries of the top latent" in second.message
    assert "since the previous factor-out" in second.message
    with pytest.raises(ShapeError, match="8 of the 8 entries of the latent 3.split"):
        _graph(tmp_path, text.replace("PRIOR", "standard").replace(
            "  - {kind: split", "  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}\n  - {kind: split"))


def test_parity_alternate_expands_to_0_1_0_and_loads_back(tmp_path):
    spec = flowspec.load_spec(ROOT / "specs" / "flowpp-digits.yaml")
    parities = [(layer.config.mask, layer.config.parity) for layer in expand(spec)
                if layer.config.kind == "coupling"]
    assert parities == [("checkerboard", 0), ("checkerboard", 1), ("checkerboard", 0), ("checkerboard", 1),
                        ("channel", 0), ("channel", 1),
                        ("checkerboard", 0), ("checkerboard", 1), ("checkerboard", 0)]
    result = runner.invoke(app, ["expand", str(ROOT / "specs" / "flowpp-digits.yaml")])
    assert result.exit_code == 0
    rows = [row for row in yaml.safe_load(result.stdout)["layers"] if row["kind"] == "coupling"]
    assert [row["parity"] for row in rows] == [p for _, p in parities]
    path = tmp_path / "explicit.yaml"
    path.write_text(result.stdout)
    assert flowspec.build_graph(flowspec.load_spec(path)).warnings == []


def test_parity_alternate_counts_copies_over_steps_and_levels():
    text = """\
input: {shape: [1, 8, 8]}
levels: 2
steps: 3
step: [actnorm, {kind: coupling, mask: checkerboard, parity: alternate, conditioner: {kind: conv, hidden: 8}}]
"""
    spec = flowspec.loads_spec(text)
    parities = [layer.config.parity for layer in expand(spec) if layer.config.kind == "coupling"]
    assert parities == [0, 1, 0, 1, 0, 1]


def test_a_bad_parity_names_its_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("input: {shape: [4]}\nlayers:\n  - {kind: coupling, parity: alternating}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.yaml:3:" in result.stderr and "layers[0].parity" in result.stderr and "'alternate'" in result.stderr


def test_columns_mask_is_flowpps_checkerboard_split():
    """Flow++'s ``CheckerboardSplit`` reshapes ``[B, H, W, C]`` to ``[B, H, W/2, 2, C]`` and takes
    index 0 and 1 of the pair: parity 0 transforms ``x[..., 0::2]`` (even columns), parity 1 the odd."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    for parity in (0, 1):
        config = CouplingConfig(mask="columns", parity=parity, transform="additive",
                                conditioner={"kind": "conv", "hidden": 4})
        layer = config.build((3, 4, 6)).double()
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.3 * torch.randn_like(p))
        y, _ = layer(x)
        kept = x.reshape(2, 3, 4, 3, 2)[..., 1 - parity]  # the half Flow++ conditions on
        torch.testing.assert_close(y.reshape(2, 3, 4, 3, 2)[..., 1 - parity], kept, rtol=0, atol=0)
        assert not torch.allclose(y.reshape(2, 3, 4, 3, 2)[..., parity], x.reshape(2, 3, 4, 3, 2)[..., parity])
        assert config.dependent_entries((3, 4, 6)).reshape(3, 4, 3, 2)[..., parity].all()
    with pytest.raises(ShapeError, match="a columns mask needs at least 2 columns"):
        flowspec.build_graph(flowspec.loads_spec(
            "input: {shape: [2, 4, 1]}\nlayers: [{kind: coupling, mask: columns}, {kind: coupling, parity: 1, mask: channel}]\n"))
