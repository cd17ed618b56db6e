"""The graph is the one intermediate form: each node states its config, shapes, context and cost
once, and compiling, reporting, drawing, check's narrowing and invertible backprop are passes over
those nodes. These tests hold the passes to the nodes: the model's modules are the nodes' builds
(parameter for parameter), the report's rows are the nodes' costs, the diagram's context edges are
the nodes' contexts, and invertible backprop's runs are the graph's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowspec
from flowspec.compile.check import narrow_spec
from flowspec.graph.build import build_graph
from flowspec.graph.nodes import invertible_runs
from flowspec.report.costs import flow_parts

ROOT = Path(__file__).resolve().parent.parent
#: small shipped specs covering a dequantizer (uniform, variational), typed columns, a label and a
#: vector condition with conditional priors, splits, MAF and spline layers
SPECS = ("glow-digits", "glow-digits-cond", "glow-digits-vardeq", "moons-cond", "diabetes-mixed", "maf-wine",
         "nsf-wine")


def _graph(name: str):
    return build_graph(flowspec.load_spec(ROOT / "specs" / f"{name}.yaml"))


def _params(module) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", SPECS)
def test_every_node_builds_what_its_cost_rule_counts(name):
    graph = _graph(name)
    torch.manual_seed(0)
    for node in graph.nodes:
        module = node.build()
        assert _params(module) == node.cost.params, f"{name}: {node.name} ({node.kind})"


@pytest.mark.parametrize("name", SPECS)
def test_the_model_is_the_nodes_builds_and_the_report_their_costs(name):
    graph = _graph(name)
    model = flowspec.compile(graph.spec)
    parts = flow_parts(graph)
    assert [part.name for part in parts] == [node.name for node in graph.nodes]
    assert [part.cost for part in parts] == [node.cost for node in graph.nodes]
    modules = {"dequantizer": model.dequantizer, "columns": model.columns, "condition": model.condition,
               "prior": model.top_prior, **dict(zip(model.names, model.layers))}
    for node in graph.nodes:
        assert _params(modules[node.name]) == node.cost.params, f"{name}: {node.name}"
    assert sum(node.cost.params for node in graph.nodes) == _params(model)


@pytest.mark.parametrize("name", ["glow-digits-cond", "moons-cond"])
def test_context_edges_are_the_nodes_contexts(name):
    graph = _graph(name)
    condition = graph.condition
    assert condition is not None and condition.out_shape == (graph.spec.condition.features,)
    drawn = {target for source, target, data in graph.graph.edges(data=True) if data.get("context")}
    expected = {node.name for node in graph.layers if node.context is not None and node.config.reads_context}
    expected |= {graph.top_prior.name} if graph.top_prior.context is not None else set()
    assert drawn == expected and expected
    for node in graph.layers:
        if node.config.factors_out and graph.spec.condition.prior != "conditional":
            assert node.context is None  # a split's prior sees the condition only when it is conditional
        else:
            assert node.context == condition.out_shape


def test_an_unconditional_continuous_graph_has_no_dequantizer_or_condition_node():
    graph = _graph("maf-power")
    assert graph.dequantizer is None and graph.condition is None
    assert all(node.context is None for node in graph.layers)
    assert [node.name for node in graph.nodes][-1] == "prior"


def test_invertible_runs_group_the_layers_between_factoring_ones():
    assert invertible_runs([]) == []
    assert invertible_runs([False, False, True, False, True]) == [(0, 2, False), (2, 3, True), (3, 4, False),
                                                                  (4, 5, True)]
    assert invertible_runs([True, False]) == [(0, 1, True), (1, 2, False)]
    graph = _graph("glow-digits")
    runs = graph.invertible_runs
    assert [i for start, stop, _ in runs for i in range(start, stop)] == list(range(len(graph.layers)))
    assert all(graph.layers[start].config.factors_out == factors for start, stop, factors in runs)
    assert [graph.layers[s].name for s, _, f in runs if f] == [latent.owner for latent in graph.latents]
    assert graph.latent_shapes[:-1] == [latent.shape for latent in graph.latents]


def test_check_narrows_each_layer_node():
    spec = flowspec.load_spec(ROOT / "specs" / "glow-digits.yaml")
    graph, narrow = build_graph(spec), build_graph(narrow_spec(spec, 4))
    assert [n.name for n in narrow.layers] == [n.name for n in graph.layers]
    assert [n.kind for n in narrow.layers] == [n.kind for n in graph.layers]
    assert sum(n.cost.params for n in narrow.layers) < sum(n.cost.params for n in graph.layers)


def test_a_vae_is_its_graph_nodes_too():
    """The VAE's parts are nodes stated once: the report's rows, the drawn nodes and the model's
    IAF steps come from them, and their costs count the model's parameters."""
    from flowspec.vae.costs import vae_parts

    graph = _graph("vae-iaf-digits")
    names = [node.name for node in graph.nodes]
    assert names[:2] == ["encoder", "z0"] and names[-3:] == ["decoder", "likelihood", "prior"]
    assert [part.name for part in vae_parts(graph)] == names
    assert [part.kind for part in vae_parts(graph)] == [node.kind for node in graph.nodes]
    assert all(graph.graph.nodes[node.name]["part"] is node for node in graph.nodes)
    model = flowspec.compile(graph.spec)
    assert len(model.iaf) == len(graph.iaf_steps) == graph.spec.iaf_steps > 1
    assert [node.reverse for node in graph.iaf_steps] == [k % 2 == 1 for k in range(graph.spec.iaf_steps)]
    assert sum(part.cost.params for part in vae_parts(graph)) == _params(model)
    assert [part.sampling for part in vae_parts(graph)] == [node.role not in ("encoder", "posterior", "iaf")
                                                            for node in graph.nodes]
