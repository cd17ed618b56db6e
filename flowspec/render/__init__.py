"""Graphviz diagrams of a spec's graph (no weights are allocated).

One node per layer (``detail="layer"``), per step or per level (collapsed), boxed in clusters,
edges labelled with tensor shapes, factored latents drawn to their prior nodes, colours by
layer kind with a legend.

Clusters are data: a node of the spec's graph goes into the cluster named by its ``cluster``
attribute when it has one (the VAE graph sets ``encoder``, ``posterior``, ``decoder``, ``prior``),
else into ``level N`` by its layer's level. Parts of a model that are not layers of the graph
(the dequantizer) are added by *cluster providers*: functions ``(flow_graph) -> list[Part]`` registered
with :func:`register_part`; each :class:`Part` is a cluster of nodes with its edges into the graph.
"""

from flowspec.render.diagram import (CLUSTER_STYLE, KIND_COLOURS, Part, register_part, render,
                                     to_dot)

__all__ = ["CLUSTER_STYLE", "KIND_COLOURS", "Part", "register_part", "render", "to_dot"]
