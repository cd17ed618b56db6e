"""The ``paper`` diagram detail: each distinct repeated block drawn once in a "× K" box (Glow's
Figure 2), shapes of every repetition on the edges, shapes per level listed; ``auto`` picks it for
large flows."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

import flowspec
from flowspec.render import diagram, render, to_dot
from flowspec.render.paper import Fold, fold

needs_dot = pytest.mark.skipif(diagram.shutil.which("dot") is None, reason="Graphviz `dot` not installed")


def _graph(path):
    return flowspec.build_graph(flowspec.load_spec(path))


def _nodes(dot: str) -> list[str]:
    """Node statements of a DOT text (not edges, not graph/node/edge defaults)."""
    found = re.findall(r'^\t+("[^"]+"|[\w.]+) \[', dot, flags=re.M)
    return [n for n in found if n not in ("graph", "node", "edge")]


def _shape(items) -> list:
    """A folded list written as signatures and (count, body) pairs, to compare with."""
    return [(item.count, _shape(item.body)) if isinstance(item, Fold) else item for item in items]


def test_fold_finds_nested_repetition():
    assert _shape(fold(list("abcabcabcd"), list("abcabcabcd"))) == [(3, ["a", "b", "c"]), "d"]
    text = "xabababy" * 2 + "xababz"
    assert _shape(fold(list(text), list(text))) == [(2, ["x", (3, ["a", "b"]), "y"]), "x", (2, ["a", "b"]), "z"]
    assert _shape(fold(list("abcd"), list("abcd"))) == list("abcd")


def test_paper_glow_has_under_40_nodes_and_names_k_and_l():
    graph = _graph("specs/glow.yaml")
    dot = to_dot(graph, "paper")
    nodes = _nodes(dot)
    assert len(nodes) < 40 and len(_nodes(to_dot(graph, "layer"))) > 300
    assert "× K  (K = 32)" in dot and "× (L−1)  (L = 3)" in dot and "L = 3 levels, K = 32 steps" in dot
    for kind in ("squeeze", "actnorm", "invconv", "coupling", "split", "prior"):
        assert re.search(rf'^\t+"level[^"]+" \[label="?{kind}', dot, flags=re.M), kind
    # one step of flow drawn once in full, the last level's steps as one node that says so
    drawn = [line for line in dot.splitlines() if "[label=" in line and "legend." not in line]
    assert sum("label=actnorm" in line for line in drawn) == 1 and "as drawn above" in dot


def test_paper_jet_draws_the_shuffled_couplings_once_per_run():
    """Each shuffled coupling draws its own permutation (seed + copy), yet the copies of a row are
    one block: drawn once in a "× 4" box, the later runs as nodes that say so."""
    dot = to_dot(_graph("specs/jet-imagenet64.yaml"), "paper")
    assert 'label="× 4"' in dot and dot.count("as drawn above") == 6
    drawn = [line for line in dot.splitlines() if '[label="coupling' in line and "legend." not in line]
    assert len(drawn) == 1 + 6 + 6  # the first run's coupling, the six spatial ones, six "as drawn above"


def test_paper_glow_shapes_on_edges_and_per_level():
    dot = to_dot(_graph("specs/glow.yaml"), "paper")
    assert 'label="12x16x16 | 24x8x8"' in dot  # a level's steps, at level 0 and level 1
    assert 'label="6x16x16 | 12x8x8"' in dot  # the factored latents
    for line in ("level 0: 3x32x32 → squeeze 12x16x16 → split 6x16x16 + z 6x16x16",
                 "level 2: 12x8x8 → squeeze 48x4x4 → z 48x4x4"):
        assert line in dot


def test_paper_folds_vae_and_dequantizer_parts():
    vae = to_dot(_graph("specs/vae-iaf-mnist.yaml"), "paper")
    assert "× 8" in vae and vae.count('iaf [label="iaf') + vae.count('"iaf.0" [label="iaf') == 1
    for cluster in ("encoder", "posterior", "decoder", "prior"):
        assert f"cluster_{cluster}" in vae
    vardeq = to_dot(_graph("specs/glow-digits-vardeq.yaml"), "paper")
    assert "cluster_dequantizer" in vardeq and "gaussian noise" in vardeq and "× 2" in vardeq


def test_auto_is_paper_only_for_large_flows():
    glow, nice = _graph("specs/glow.yaml"), _graph("specs/nice.yaml")
    assert "paper detail" in to_dot(glow, "auto") and diagram.resolve_detail(nice, "auto") == "layer"


@needs_dot
@pytest.mark.parametrize("suffix", ["svg", "png", "pdf"])
def test_paper_renders_every_format(tmp_path, suffix):
    path = render(_graph("specs/glow.yaml"), tmp_path / f"glow.{suffix}")
    data = path.read_bytes()
    if suffix == "svg":
        assert ET.fromstring(data).tag.endswith("svg") and b"K = 32" in data
    else:
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if suffix == "png" else data[:5] == b"%PDF-"
