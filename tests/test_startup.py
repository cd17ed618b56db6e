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
#: the packages a spec tool may import beyond ``import torch`` (and the standard library): flowspec,
#: its spec models (pydantic), YAML and the command line (typer without rich)
SPEC_TOOL_PACKAGES = {"flowspec", "pydantic", "pydantic_core", "typing_inspection", "annotated_types", "yaml",
                      "typer", "shellingham", "annotated_doc"}

PROBE = """
import json, sys
sys.argv = ["flowspec", *{argv!r}]
from flowspec.cli import main
try:
    main()
except SystemExit as exit:
    code = exit.code
import gc
print(json.dumps({{"code": code, "modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}}))
"""


def run_cli(*argv: str) -> dict:
    """``flowspec ARGV`` in a fresh interpreter: its exit code, ``sys.modules`` after it, and how many
    objects it moved out of the collector's generations (``gc.freeze``)."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def imported_by(*argv: str) -> tuple[int, list[str]]:
    result = run_cli(*argv)
    return result["code"], result["modules"]


@pytest.mark.parametrize("argv", [("validate", "specs/glow.yaml"), ("expand", "specs/vae-iaf-digits.yaml")],
                         ids=["validate-glow", "expand-vae"])
def test_spec_tools_import_no_compiler_report_data_trainer_or_networkx(argv):
    code, modules = imported_by(*argv)
    assert code in (None, 0)
    heavy = [m for m in modules if m.startswith(HEAVY)]
    assert not heavy, f"flowspec {' '.join(argv)} imported {heavy}"
    assert "flowspec.graph.build" in modules and "flowspec.spec.loader" in modules  # it did validate


@pytest.mark.parametrize("argv", [("validate", "specs/glow.yaml"),
                                  ("render", "specs/glow.yaml", "--detail", "paper")],
                         ids=["validate", "render-paper"])
def test_spec_tools_import_nothing_beyond_torch_but_the_spec_packages(argv, tmp_path):
    """The import set of a spec tool, against a bare ``import torch``: no further torch module (no
    dynamo, inductor, ...) and, outside the standard library, only :data:`SPEC_TOOL_PACKAGES` (and
    graphviz for render)."""
    done = subprocess.run([sys.executable, "-c", "import json, sys, torch; print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    baseline = set(json.loads(done.stdout))
    result = run_cli(*argv, *(["-o", str(tmp_path / "graph.dot")] if argv[0] == "render" else []))
    assert result["code"] in (None, 0)
    added = set(result["modules"]) - baseline
    assert not [m for m in added if m.split(".")[0] == "torch"]
    packages = {m.split(".")[0] for m in added} - set(sys.stdlib_module_names)
    drawing = {"graphviz"} if argv[0] == "render" else set()  # render writes through the graphviz package
    assert {p for p in packages if not p.startswith("_") and p != "cython_runtime"} <= SPEC_TOOL_PACKAGES | drawing


def test_the_command_freezes_what_startup_imported():
    """torch's, pydantic's and the kinds' objects are frozen before the verb runs, so no later full
    collection (nor the one at interpreter exit) walks them; a library import freezes nothing."""
    assert run_cli("validate", "specs/glow.yaml")["frozen"] > 50_000
    done = subprocess.run([sys.executable, "-c", "import gc, flowspec.spec.loader; print(gc.get_freeze_count())"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "0"


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
