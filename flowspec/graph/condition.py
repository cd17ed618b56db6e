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


def reads_condition(config, in_shape, context) -> bool:
    """True when the layer is given a context and its kind declares that it reads one
    (``reads_context``)."""
    return context is not None and config.reads_context


def add_condition_node(flow, top_prior: str) -> None:
    """Add the ``condition`` node and its edges (``context=True``, ``shape=(E,)``) to ``flow.graph``."""
    spec = flow.spec
    shape = context_shape(spec)
    if shape is None:
        return
    graph = flow.graph
    condition = spec.condition
    graph.add_node(CONDITION, kind="condition", detail=condition.detail(), shape=shape, path=("condition",))
    for node in flow.layers:
        context = layer_context(spec, node.config)
        if reads_condition(node.config, node.in_shape, context):
            graph.add_edge(CONDITION, node.name, shape=shape, context=True)
    if top_prior_context(spec):
        graph.add_edge(CONDITION, top_prior, shape=shape, context=True)
