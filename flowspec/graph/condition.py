"""The condition's part of the flow graph: a ``condition`` node with an edge to every node that reads
the condition's features (its shape on the edge).

Which layers read it is a declared property of each kind (``reads_context``: a coupling's
conditioner appends the features, a MADE takes them, a split's prior is shifted by them), so
nothing here names a kind; tests/test_layer_contract.py checks each kind's declaration against
its module. The top prior reads it when ``condition.prior`` is ``conditional``.
"""

from __future__ import annotations

CONDITION = "condition"


def context_shape(spec) -> tuple[int, ...] | None:
    """``(E,)``, the features every layer may see, or None for an unconditional spec."""
    condition = getattr(spec, "condition", None)
    return None if condition is None else (condition.features,)


def layer_context(spec, config) -> tuple[int, ...] | None:
    """The context shape a layer is built with: nodes that factor out a latent to a prior see the
    condition only when ``condition.prior`` is ``conditional``."""
    shape = context_shape(spec)
    if shape is not None and config.factors_out and spec.condition.prior != "conditional":
        return None
    return shape


def top_prior_context(spec) -> int:
    """Feature count the top prior is shifted by (0: an unconditional top prior)."""
    condition = getattr(spec, "condition", None)
    return condition.features if condition is not None and condition.prior == "conditional" else 0


def reads_condition(config, context) -> bool:
    """True when the layer is given a context and its kind declares that it reads one
    (``reads_context``)."""
    return context is not None and config.reads_context


def add_condition_node(flow, top_prior: str) -> None:
    """Add the ``condition`` node and its edges (``context=True``, ``shape=(E,)``) to ``flow.graph``:
    one to every layer node built with a context whose kind reads it, one to the top prior when it
    is shifted by the features."""
    node = flow.condition
    if node is None:
        return
    graph, shape = flow.graph, node.out_shape
    graph.add_node(node.name, kind="condition", detail=node.detail, shape=shape, path=node.path, part=node)
    for layer in flow.layers:
        if reads_condition(layer.config, layer.context):
            graph.add_edge(node.name, layer.name, shape=shape, context=True)
    if flow.top_prior.context is not None:
        graph.add_edge(node.name, top_prior, shape=shape, context=True)
