"""A small directed graph with the part of ``networkx.DiGraph``'s interface flowspec uses.

Validating a spec builds one graph and checks it (one input, each output consumed once, every latent
ends in a prior, acyclic); networkx would cost more to import than all of that takes, on every
``flowspec validate``. :class:`Digraph` keeps networkx's reading API (``nodes(data=True)``,
``nodes[name]``, ``edges(data=True)``, ``edges[u, v]``, ``successors``, degrees) and order (nodes
and each node's edges in insertion order), and :meth:`Digraph.to_networkx` hands the same graph to
networkx for any further analysis.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Hashable


class NodeView(Mapping):
    """``graph.nodes``: iterate names, ``nodes[name]`` is its attribute dict, ``nodes(data=True)``
    yields ``(name, attributes)``."""

    def __init__(self, nodes: dict):
        self._nodes = nodes

    def __getitem__(self, name: Hashable) -> dict:
        return self._nodes[name]

    def __iter__(self) -> Iterator:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __call__(self, data: bool = False):
        return iter(self._nodes.items()) if data else iter(self._nodes)


class EdgeView:
    """``graph.edges``: iterate ``(u, v)``, ``edges[u, v]`` is its attribute dict,
    ``edges(data=True)`` yields ``(u, v, attributes)``."""

    def __init__(self, succ: dict):
        self._succ = succ

    def __getitem__(self, edge: tuple) -> dict:
        u, v = edge
        return self._succ[u][v]

    def __iter__(self) -> Iterator[tuple]:
        return ((u, v) for u, targets in self._succ.items() for v in targets)

    def __len__(self) -> int:
        return sum(len(targets) for targets in self._succ.values())

    def __call__(self, data: bool = False):
        if data:
            return ((u, v, d) for u, targets in self._succ.items() for v, d in targets.items())
        return iter(self)


class Digraph:
    """Nodes with attribute dicts and directed edges with attribute dicts (at most one edge per
    ordered pair, as in ``networkx.DiGraph``)."""

    def __init__(self) -> None:
        self._nodes: dict[Hashable, dict] = {}
        self._succ: dict[Hashable, dict[Hashable, dict]] = {}
        self._pred: dict[Hashable, dict[Hashable, dict]] = {}

    def add_node(self, name: Hashable, **attributes: Any) -> None:
        if name not in self._nodes:
            self._nodes[name], self._succ[name], self._pred[name] = {}, {}, {}
        self._nodes[name].update(attributes)

    def add_edge(self, u: Hashable, v: Hashable, **attributes: Any) -> None:
        self.add_node(u)
        self.add_node(v)
        data = self._succ[u].setdefault(v, {})
        data.update(attributes)
        self._pred[v][u] = data

    @property
    def nodes(self) -> NodeView:
        return NodeView(self._nodes)

    @property
    def edges(self) -> EdgeView:
        return EdgeView(self._succ)

    def has_node(self, name: Hashable) -> bool:
        return name in self._nodes

    def has_edge(self, u: Hashable, v: Hashable) -> bool:
        return u in self._succ and v in self._succ[u]

    def successors(self, name: Hashable) -> Iterator:
        return iter(self._succ[name])

    def predecessors(self, name: Hashable) -> Iterator:
        return iter(self._pred[name])

    def out_degree(self, name: Hashable) -> int:
        return len(self._succ[name])

    def in_degree(self, name: Hashable) -> int:
        return len(self._pred[name])

    def number_of_nodes(self) -> int:
        return len(self._nodes)

    def number_of_edges(self) -> int:
        return len(self.edges)

    def __contains__(self, name: Hashable) -> bool:
        return name in self._nodes

    def __iter__(self) -> Iterator:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def topological_order(self, key: Callable[[Hashable], Any] | None = None) -> list:
        """Every node after its predecessors; among the nodes ready at once, the smallest ``key``
        first (default: insertion order), as ``networkx.lexicographical_topological_sort``. Raises
        ``ValueError`` on a cycle."""
        index = {name: i for i, name in enumerate(self._nodes)}
        rank = key or index.__getitem__
        waiting = {name: len(preds) for name, preds in self._pred.items()}
        ready = [(rank(name), index[name], name) for name in self._nodes if not waiting[name]]
        heapq.heapify(ready)
        order = []
        while ready:
            _, _, name = heapq.heappop(ready)
            order.append(name)
            for successor in self._succ[name]:
                waiting[successor] -= 1
                if not waiting[successor]:
                    heapq.heappush(ready, (rank(successor), index[successor], successor))
        if len(order) != len(self._nodes):
            raise ValueError("the graph has a cycle")
        return order

    def is_acyclic(self) -> bool:
        try:
            self.topological_order()
        except ValueError:
            return False
        return True

    def to_networkx(self):
        """The same graph as a ``networkx.DiGraph`` (imports networkx)."""
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from((name, dict(data)) for name, data in self._nodes.items())
        graph.add_edges_from((u, v, dict(data)) for u, v, data in self.edges(data=True))
        return graph
