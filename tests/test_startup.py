"""What the spec tools import: ``flowspec validate`` (and expand, render) load the spec and graph
layers only, never the compiler, report, data, trainer or networkx; and the small graph that
replaced networkx on that path agrees with networkx."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import flowspec
from flowspec.digraph import Digraph

ROOT = Path(__file__).resolve().parent.parent

#: subpackages and packages a spec tool must not import
HEAVY = ("flowspec.compile", "flowspec.report", "flowspec.data", "flowspec.train", "flowspec.bench",
         "flowspec.render", "flowspec.vae.model", "flowspec.dequant.build", "networkx", "graphviz")

PROBE = """
import json, sys
sys.argv = ["flowspec", *{argv!r}]
from flowspec.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def imported_by(*argv: str) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], result["modules"]


@pytest.mark.parametrize("argv", [("validate", "specs/glow.yaml"), ("expand", "specs/vae-iaf-digits.yaml")],
                         ids=["validate-glow", "expand-vae"])
def test_spec_tools_import_no_compiler_report_data_trainer_or_networkx(argv):
    code, modules = imported_by(*argv)
    assert code in (None, 0)
    heavy = [m for m in modules if m.startswith(HEAVY)]
    assert not heavy, f"flowspec {' '.join(argv)} imported {heavy}"
    assert "flowspec.graph.build" in modules and "flowspec.spec.loader" in modules  # it did validate


def test_the_api_names_still_resolve():
    assert callable(flowspec.compile) and flowspec.load_spec and flowspec.FlowModel.__name__ == "FlowModel"
    importlib.import_module("flowspec.compile.latents")  # rebinds flowspec.compile to the package

    model = flowspec.compile(flowspec.load_spec(ROOT / "specs" / "moons-cond.yaml"))
    assert isinstance(model, flowspec.FlowModel)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        flowspec.nothing  # noqa: B018


def random_graph(seed: int) -> Digraph:
    import random

    rng = random.Random(seed)
    graph = Digraph()
    names = [f"n{i}" for i in range(12)]
    rng.shuffle(names)
    for i, name in enumerate(names):
        graph.add_node(name, index=i)
    for _ in range(20):
        a, b = sorted(rng.sample(range(12), 2))
        graph.add_edge(names[a], names[b], shape=(a, b))
    return graph


@pytest.mark.parametrize("seed", range(5))
def test_digraph_agrees_with_networkx(seed):
    graph = random_graph(seed)
    reference = graph.to_networkx()
    assert list(graph.nodes(data=True)) == list(reference.nodes(data=True))
    assert list(graph.edges(data=True)) == list(reference.edges(data=True))
    assert list(graph.edges) == list(reference.edges)
    key = {name: -i for i, name in enumerate(graph.nodes)}.__getitem__
    assert graph.topological_order(key=key) == list(nx.lexicographical_topological_sort(reference, key=key))
    for name in graph.nodes:
        assert (graph.in_degree(name), graph.out_degree(name)) == (reference.in_degree(name), reference.out_degree(name))
        assert list(graph.successors(name)) == list(reference.successors(name))
    assert graph.is_acyclic() and nx.is_directed_acyclic_graph(reference)
    first, second = list(graph.edges)[0]
    graph.add_edge(second, first)
    assert not graph.is_acyclic()
    with pytest.raises(ValueError, match="cycle"):
        graph.topological_order()
