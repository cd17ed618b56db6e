"""Compile layer of the pipeline: FlowGraph -> FlowModel (torch), saving, loading and export."""

from __future__ import annotations

from flowspec.compile.model import FlowModel
from flowspec.graph.build import FlowGraph, build_graph
from flowspec.spec.models import Spec


def compile(spec: Spec | FlowGraph) -> FlowModel:  # noqa: A001 - the API name users call
    """Validate ``spec`` (or take an already built graph) and build its :class:`FlowModel`
    (a :class:`~flowspec.vae.model.VAEModel` for a ``model: vae`` spec)."""
    graph = spec if isinstance(spec, FlowGraph) else build_graph(spec)
    if not isinstance(graph, FlowGraph):
        from flowspec.vae.model import VAEModel

        return VAEModel(graph)
    return FlowModel(graph)


__all__ = ["FlowModel", "compile"]
