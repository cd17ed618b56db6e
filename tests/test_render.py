"""Diagrams: real Graphviz output (SVG parses as XML, PNG has its magic bytes) for every shipped
spec, the DOT text names every layer and shape, collapsed detail levels, data-driven clusters,
and the error when `dot` is missing."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import FlowSpecError
from flowspec.render import Part, diagram, register_part, render, to_dot
from flowspec.render.diagram import PART_PROVIDERS, shape_text

SPECS = sorted(Path(__file__).resolve().parent.parent.joinpath("specs").glob("*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_dot = pytest.mark.skipif(diagram.shutil.which("dot") is None, reason="Graphviz `dot` not installed")
runner = CliRunner()


def _graph(path):
    return flowspec.build_graph(flowspec.load_spec(path))


@needs_dot
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_svg_and_png_of_every_shipped_spec(path, tmp_path):
    graph = _graph(path)
    svg = render(graph, tmp_path / "flow.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    assert "input" in titles or "encoder" in titles
    png = render(graph, tmp_path / "flow.png", detail="level")
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_dot_names_every_layer_and_shape(path):
    graph = _graph(path)
    text = to_dot(graph, "layer")
    names = [node.name for node in graph.layers] if isinstance(graph, flowspec.FlowGraph) else list(graph.graph.nodes)
    for name in names:
        assert name in text
    for _, _, data in graph.graph.edges(data=True):
        assert shape_text(data["shape"]) in text


def test_collapsed_details_keep_levels_priors_and_shapes():
    graph = _graph("specs/glow.yaml")
    layer, step, level = (to_dot(graph, d) for d in ("layer", "step", "level"))
    assert len(level) < len(step) < len(layer)
    assert "level0.step31" in step and "level0.step0.coupling" not in step
    for lvl in range(3):
        count = sum(1 for node in graph.layers if node.level == lvl)
        assert f"level{lvl}\n{count} layers" in level
    for text in (step, level):
        for split in ("level0.split.prior", "level1.split.prior"):
            assert split in text  # factored latents still reach their priors
        for shape in ("3x32x32", "6x16x16", "12x8x8", "48x4x4"):  # between levels and to priors
            assert f'label="{shape}"' in text
    assert 'label="12x16x16"' in step and 'label="12x16x16"' not in level  # inside level 0
    assert "cluster_level_0" in layer and "cluster_dequantizer" in layer and "cluster_legend" in layer
    for kind in ("actnorm", "invconv", "coupling", "split", "squeeze"):
        assert f"legend.{kind}" in layer


def test_clusters_come_from_node_data_and_parts():
    graph = _graph("specs/vae-iaf-digits.yaml")
    text = to_dot(graph)
    for cluster in ("encoder", "posterior", "decoder"):
        assert f"cluster_{cluster}" in text

    @register_part
    def extra(flow):
        return [Part("my stage", "my stage", nodes=[("mine", "mine\nthing", "thing")],
                     edges=[("mine", "input", (1, 8, 8))])]

    try:
        text = to_dot(_graph("specs/glow-digits.yaml"))
        assert "cluster_my_stage" in text and "mine -> input" in text and "legend.thing" in text
    finally:
        PART_PROVIDERS.remove(extra)
    assert "cluster_my_stage" not in to_dot(_graph("specs/glow-digits.yaml"))


def test_missing_dot_is_a_clear_error_and_dot_files_still_work(tmp_path, monkeypatch):
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    graph = _graph("specs/glow-digits.yaml")
    with pytest.raises(FlowSpecError, match="install Graphviz: apt-get install graphviz"):
        render(graph, tmp_path / "flow.svg")
    assert not (tmp_path / "flow.svg").exists()
    written = render(graph, tmp_path / "flow.dot")
    assert written.read_text().startswith("digraph")
    result = runner.invoke(app, ["render", "specs/glow-digits.yaml", "-o", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and "apt-get install graphviz" in result.output
    assert "Traceback" not in result.output


def test_render_cli_formats_and_errors(tmp_path):
    result = runner.invoke(app, ["render", "specs/nice.yaml", "-o", str(tmp_path / "n.dot"), "--detail", "level"])
    assert result.exit_code == 0, result.output
    assert "coupling" in (tmp_path / "n.dot").read_text()
    result = runner.invoke(app, ["render", "specs/nice.yaml", "-o", str(tmp_path / "n.gif")])
    assert result.exit_code == 2 and "use a .svg, .png, .pdf or .dot file" in result.output
    with pytest.raises(FlowSpecError, match="unknown detail"):
        to_dot(_graph("specs/nice.yaml"), "pixel")


def test_build_writes_diagram_and_report(tmp_path, monkeypatch):
    from flowspec.compile.build import build_folder

    spec = flowspec.load_spec("specs/glow-digits.yaml")
    if diagram.shutil.which("dot"):
        result = build_folder(spec, tmp_path / "with", export=False)
        assert ET.parse(result.files["diagram"]).getroot().tag.endswith("svg")
        assert not result.notes
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    result = build_folder(spec, tmp_path / "without", export=False)
    assert not (tmp_path / "without" / "diagram.svg").exists()
    assert result.notes == ["skipped diagram.svg: Graphviz `dot` is not installed (apt-get install graphviz)"]
    text = (tmp_path / "without" / "report.md").read_text()
    assert "| **total** |" in text and f"**{result.total_params:,}**" in text
