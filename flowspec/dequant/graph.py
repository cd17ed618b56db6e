"""The dequantizer's part of the flow graph: its rules (checked against the input) and its nodes.

Pure: shapes come from the rules below, no weight is allocated. Every node carries
``cluster="dequantizer"``, a ``kind`` and a ``path`` into the spec; edges carry ``shape``. The
cluster ends in the node ``dequantizer.output`` (``v = x + u`` mapped to model space), which feeds
the flow's input node.
"""

from __future__ import annotations

from typing import Callable

import networkx as nx

from flowspec.dequant.config import VariationalDequantization
from flowspec.dequant.variational import context_kind, context_shape
from flowspec.errors import Problem

CLUSTER = "dequantizer"
PATH = ("dequantization",)


def dequantizer_problems(spec, shape: tuple[int, ...], problem: Callable[..., Problem]) -> list[Problem]:
    """Rules of the dequantization and preprocess sections for an input of ``shape``."""
    config, problems = spec.dequantization, []
    if spec.input.levels < 2:  # InputSpec already enforces it; kept so the rule is stated here
        problems.append(problem(f"dequantization needs levels >= 2, got {spec.input.levels}", ("input", "levels")))
    if not isinstance(config, VariationalDequantization):
        return problems
    image = len(shape) == 3
    kind = context_kind(config, shape)
    if image and kind == "mlp":
        problems.append(problem(f"an mlp context network works on vectors; this input is an image {shape}",
                                PATH + ("context", "kind"), "use context: {kind: conv} or leave kind out"))
    if not image and kind == "conv":
        problems.append(problem(f"a conv context network needs an image input; this input is a vector {shape}",
                                PATH + ("context", "kind"), "use context: {kind: mlp} or leave kind out"))
    conditioner = config.coupling.conditioner if config.coupling is not None else None
    if conditioner is not None and (conditioner.accepts == "image") != image:
        problems.append(problem(f"a {conditioner.kind} conditioner needs {'an image' if conditioner.accepts == 'image' else 'a vector'}"
                                f" input; this input is {shape}", PATH + ("coupling", "conditioner", "kind")))
    if image and shape[1] * shape[2] < 2:
        problems.append(problem(f"variational dequantization couples with a checkerboard mask, which needs at "
                                f"least 2 pixels; this input is {shape}", PATH + ("kind",),
                                "use dequantization: {kind: uniform}"))
    if not image and shape[0] < 2:
        problems.append(problem(f"variational dequantization couples halves of the features, which needs at "
                                f"least 2; this input is {shape}", PATH + ("kind",),
                                "use dequantization: {kind: uniform}"))
    return problems


def add_dequantizer_nodes(graph: nx.DiGraph, spec, input_node: str) -> None:
    """Add the dequantizer's nodes (``cluster="dequantizer"``) and an edge into ``input_node``."""
    config = spec.dequantization
    shape = tuple(spec.input.shape)
    data, out = f"{CLUSTER}.x", f"{CLUSTER}.output"
    graph.add_node(data, kind="data", cluster=CLUSTER, shape=shape, levels=spec.input.levels, path=("input",))
    preprocess = spec.preprocess.kind if getattr(spec, "preprocess", None) is not None else "scale"
    formula = ("y = logit(alpha + (1 - 2 alpha) (x + u) / n)" if preprocess == "logit"
               else "y = (x + u) / n" + (" - 1/2" if config.centred else ""))
    graph.add_node(out, kind=f"dequantize ({preprocess})", cluster=CLUSTER, formula=formula,
                   path=("preprocess",) if preprocess == "logit" else PATH)
    graph.add_edge(data, out, shape=shape)
    if not isinstance(config, VariationalDequantization):
        noise = f"{CLUSTER}.uniform"
        graph.add_node(noise, kind="uniform noise", cluster=CLUSTER, formula="u ~ U[0, 1)^D", path=PATH)
        graph.add_edge(noise, out, shape=shape)
        graph.add_edge(out, input_node, shape=shape, dequantized=True)
        return
    context, context_out = f"{CLUSTER}.context", context_shape(config, shape)
    graph.add_node(context, kind=f"{context_kind(config, shape)} context", cluster=CLUSTER,
                   hidden=config.context.hidden, depth=config.context.depth, path=PATH + ("context",))
    graph.add_edge(data, context, shape=shape)
    previous = f"{CLUSTER}.eps"
    graph.add_node(previous, kind="gaussian noise", cluster=CLUSTER, formula="eps ~ N(0, I)", path=PATH)
    for k in range(config.steps):
        names = [f"{CLUSTER}.step{k}.actnorm"]
        if shape[0] >= 2:
            names.append(f"{CLUSTER}.step{k}.invconv")
        names.append(f"{CLUSTER}.step{k}.coupling")
        for name in names:
            layer = name.rsplit(".", 1)[1]
            extra = {"mask": "checkerboard" if len(shape) == 3 else "channel", "parity": k % 2,
                     "hidden": config.hidden} if layer == "coupling" else {}
            graph.add_node(name, kind=layer, cluster=CLUSTER, step=k, path=PATH + ("steps",), **extra)
            graph.add_edge(previous, name, shape=shape)
            previous = name
        graph.add_edge(context, names[-1], shape=context_out, context=True)
    sigmoid = f"{CLUSTER}.sigmoid"
    graph.add_node(sigmoid, kind="sigmoid", cluster=CLUSTER, formula="u = sigmoid(z)", path=PATH)
    graph.add_edge(previous, sigmoid, shape=shape)
    graph.add_edge(sigmoid, out, shape=shape)
    graph.add_edge(out, input_node, shape=shape, dequantized=True)
