"""The dequantizer's part of the flow graph: its rules (checked against the input) and its nodes.
Each dequantization kind's config states its own rules and noise nodes (``graph_problems``,
``add_noise_nodes``); this module places them around the data and model-space nodes.

Pure: shapes come from the rules below, no weight is allocated. Every node carries
``cluster="dequantizer"``, a ``kind`` and a ``path`` into the spec; edges carry ``shape``. The
cluster ends in the node ``dequantizer.output`` (``v = x + u`` mapped to model space), which feeds
the flow's input node.
"""

from __future__ import annotations

from typing import Callable


from flowspec.dequant.base import CLUSTER, PATH
from flowspec.errors import Problem
from flowspec.digraph import Digraph


def dequantizer_problems(spec, shape: tuple[int, ...], problem: Callable[..., Problem]) -> list[Problem]:
    """Rules of the dequantization and preprocess sections for an input of ``shape``."""
    config, problems = spec.dequantization, []
    if spec.input.levels < 2:  # InputSpec already enforces it; kept so the rule is stated here
        problems.append(problem(f"dequantization needs levels >= 2, got {spec.input.levels}", ("input", "levels")))
    problems += config.graph_problems(shape, problem)
    return problems


def add_dequantizer_nodes(graph: Digraph, spec, input_node: str) -> None:
    """Add the dequantizer's nodes (``cluster="dequantizer"``) and an edge into ``input_node``."""
    config = spec.dequantization
    shape = tuple(spec.input.shape)
    data, out = f"{CLUSTER}.x", f"{CLUSTER}.output"
    graph.add_node(data, kind="data", cluster=CLUSTER, shape=shape, levels=spec.input.levels, path=("input",))
    preprocess = getattr(spec, "preprocess", None)
    if preprocess is None:  # the default map into model space: scale (and centre)
        name, formula, path = "scale", "y = (x + u) / n" + (" - 1/2" if config.centred else ""), PATH
    else:
        name, formula, path = preprocess.kind, preprocess.formula, preprocess.path
    graph.add_node(out, kind=f"dequantize ({name})", cluster=CLUSTER, formula=formula, path=path)
    graph.add_edge(data, out, shape=shape)
    config.add_noise_nodes(graph, shape, data, out)
    graph.add_edge(out, input_node, shape=shape, dequantized=True)
