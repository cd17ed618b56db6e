"""Graph layer of the pipeline: shape inference and validation, no weights allocated."""

from flowspec.graph.build import FlowGraph, LayerNode, build_graph

__all__ = ["FlowGraph", "LayerNode", "build_graph"]
