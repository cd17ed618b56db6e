"""Draw a spec's graph with Graphviz: :func:`to_dot` gives the DOT text, :func:`render` a file.

Detail levels: ``paper`` draws each distinct repeated block once in a "× K" box, as papers do
(see :mod:`flowspec.render.paper`); ``layer`` draws each layer; ``step`` collapses each step of
the multiscale form (``level{L}.step{K}``) into one node; ``level`` collapses each level.
Collapsed nodes keep the shapes on the edges between them and their edges to the priors.
``auto`` is ``paper`` when ``layer`` would draw more than about 40 nodes, else ``layer``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import graphviz

from flowspec.errors import FlowSpecError
from flowspec.files import write_bytes, write_text

Detail = Literal["auto", "paper", "layer", "step", "level"]
DETAILS = ("auto", "paper", "layer", "step", "level")
#: ``auto`` draws the paper detail when the layer detail would have more nodes than this
AUTO_PAPER_NODES = 40
FORMATS = ("svg", "png", "pdf", "dot")

KIND_COLOURS: dict[str, str] = {
    "data": "#ffffff", "input": "#ffffff", "dequantizer": "#fbcfe8", "squeeze": "#e5e7eb",
    "actnorm": "#fde68a", "invconv": "#bfdbfe", "coupling": "#bbf7d0", "permute": "#ddd6fe",
    "scaling": "#fed7aa", "split": "#fecaca", "prior": "#f3f4f6", "group": "#e0f2fe",
    "condition": "#fef9c3",
}
_PALETTE = ("#a5f3fc", "#d9f99d", "#fbcfe8", "#c7d2fe", "#fde047", "#99f6e4", "#fca5a5", "#e9d5ff")

#: Graphviz attributes of a cluster box, by cluster name (others: CLUSTER_STYLE["default"]).
CLUSTER_STYLE: dict[str, dict[str, str]] = {
    "default": {"style": "rounded", "color": "#6b7280"},
    "dequantizer": {"style": "rounded,dashed", "color": "#db2777"},
    "legend": {"style": "rounded", "color": "#9ca3af"},
}


def colour(kind: str) -> str:
    """The fill of a node kind; kinds without an entry get a stable colour from a palette."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    return _PALETTE[sum(map(ord, kind)) % len(_PALETTE)]


def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class Part:
    """A cluster of nodes that are not layers of the graph (a dequantizer, an encoder...).

    ``nodes``: ``(id, label, kind)``; ``edges``: ``(source, target, shape)`` where an end may be
    a node of the graph (``"input"``, a layer's name) or of any part.
    """

    cluster: str
    label: str
    nodes: list[tuple[str, str, str]] = field(default_factory=list)
    edges: list[tuple[str, str, tuple]] = field(default_factory=list)


PART_PROVIDERS: list[Callable[[object], list[Part]]] = []


def register_part(provider: Callable[[object], list[Part]]) -> Callable[[object], list[Part]]:
    """Register ``provider(flow_graph) -> list[Part]``; every diagram asks every provider."""
    PART_PROVIDERS.append(provider)
    return provider


@register_part
def dequantizer_part(flow) -> list[Part]:
    """The data and the dequantizer feeding the flow's input: ``v = x + u``, ``u ~ q(u|x)``; nothing
    when the graph already has nodes of a ``dequantizer`` cluster (the graph then draws its own), or
    for continuous data (modelled as it is)."""
    spec = flow.spec
    config = getattr(spec, "dequantization", None)
    if getattr(spec.input, "continuous", False):
        return []
    if config is None or any(d.get("cluster") == "dequantizer" for _, d in flow.graph.nodes(data=True)):
        return []
    shape = tuple(spec.input.shape)
    return [Part("dequantizer", f"dequantizer ({config.kind})",
                 nodes=[("data", f"data x\n{spec.input.levels} levels", "data"),
                        ("dequantizer", f"{config.kind}\nv = x + u", "dequantizer")],
                 edges=[("data", "dequantizer", shape), ("dequantizer", "input", shape)])]


def _group(name: str, data: dict, detail: Detail) -> str:
    node = data.get("node")
    if node is None or detail == "layer":
        return name
    if detail == "step" and node.step is not None:
        return f"level{node.level}.step{node.step}"
    if detail == "level" and node.level is not None:
        return f"level{node.level}"
    return name


def _cluster(data: dict) -> str | None:
    if data.get("cluster"):
        return str(data["cluster"])
    node = data.get("node")
    if node is not None and node.level is not None:
        return f"level {node.level}"
    return None


def resolve_detail(flow, detail: Detail) -> Detail:
    """``auto``: ``paper`` when one node per layer would draw more than :data:`AUTO_PAPER_NODES`
    nodes, else ``layer``; any other detail as it is."""
    if detail != "auto":
        return detail
    parts = sum(len(part.nodes) for provider in PART_PROVIDERS for part in provider(flow))
    return "paper" if flow.graph.number_of_nodes() + parts > AUTO_PAPER_NODES else "layer"


def to_dot(flow, detail: Detail = "layer") -> str:
    """The DOT source of ``flow`` (a :class:`~flowspec.graph.FlowGraph` or the VAE graph)."""
    if detail not in DETAILS:
        raise FlowSpecError(f"unknown detail {detail!r}; use {', '.join(DETAILS)}")
    detail = resolve_detail(flow, detail)
    if detail == "paper":
        from flowspec.render.paper import to_paper_dot

        parts = [part for provider in PART_PROVIDERS for part in provider(flow)]
        return to_paper_dot(flow, parts, colour, CLUSTER_STYLE, shape_text)
    graph = flow.graph
    spec = flow.spec
    groups: dict[str, dict] = {}  # group id -> {kinds, members, cluster, shape}
    member_of: dict[str, str] = {}
    for name, data in graph.nodes(data=True):
        group = _group(name, data, detail)
        member_of[name] = group
        entry = groups.setdefault(group, {"kinds": [], "members": [], "cluster": _cluster(data)})
        entry["members"].append(name)
        kind = str(data.get("kind", "layer"))
        if kind not in entry["kinds"]:
            entry["kinds"].append(kind)
        if "prior" in data and data["kind"] == "prior":
            entry["prior"] = data["prior"]
        if data.get("shape") is not None and kind == "input":
            entry["shape"] = data["shape"]
        if kind == "condition":
            entry["detail"] = data.get("detail", "")

    dot = graphviz.Digraph(name=spec.name or "flow", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "label": f"{spec.name or 'flow'} ({detail} detail)",
        "labelloc": "t", "compound": "true", "nodesep": "0.25", "ranksep": "0.3"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"})

    def node_label(group: str, entry: dict) -> tuple[str, str]:
        kinds, members = entry["kinds"], entry["members"]
        if len(members) == 1:
            kind = kinds[0]
            if kind == "prior":
                return f"{group}\nprior ({entry.get('prior', '')})", kind
            if kind == "input":
                return f"input\n{shape_text(entry.get('shape', ()))}", kind
            if kind == "condition":
                return f"condition\n{entry.get('detail', '')}", kind
            return f"{group}\n{kind}", kind
        return f"{group}\n{len(members)} layers: {', '.join(kinds)}", kinds[0] if len(kinds) == 1 else "group"

    clusters: dict[str | None, list[tuple[str, str, str]]] = {}
    for group, entry in groups.items():
        label, kind = node_label(group, entry)
        clusters.setdefault(entry["cluster"], []).append((group, label, kind))
    parts = [part for provider in PART_PROVIDERS for part in provider(flow)]
    part_labels = {}
    for part in parts:
        clusters.setdefault(part.cluster, []).extend(part.nodes)
        part_labels[part.cluster] = part.label

    kinds_used: list[str] = []
    for cluster, nodes in clusters.items():
        target = dot if cluster is None else graphviz.Digraph(name=f"cluster_{cluster}".replace(" ", "_"))
        if cluster is not None:
            target.attr(label=part_labels.get(cluster, cluster), **CLUSTER_STYLE.get(cluster, CLUSTER_STYLE["default"]))
        for node_id, label, kind in nodes:
            target.node(node_id, label, fillcolor=colour(kind))
            if kind not in kinds_used:
                kinds_used.append(kind)
        if cluster is not None:
            dot.subgraph(target)

    seen = set()
    for source, target, data in graph.edges(data=True):
        a, b = member_of[source], member_of[target]
        if a == b or (a, b) in seen:
            continue
        seen.add((a, b))
        attrs = ({"style": "dashed", "color": "#b91c1c"} if data.get("latent")
                 else {"style": "dotted", "color": "#a16207"} if data.get("context") else {})
        dot.edge(a, b, label=shape_text(data.get("shape", ())), **attrs)
    for part in parts:
        for source, target, shape in part.edges:
            dot.edge(source, target, label=shape_text(shape))

    legend = graphviz.Digraph(name="cluster_legend")
    legend.attr(label="legend", **CLUSTER_STYLE["legend"])
    for kind in kinds_used:
        legend.node(f"legend.{kind}", "mixed kinds (collapsed)" if kind == "group" else kind,
                    fillcolor=colour(kind))
    for first, second in zip(kinds_used, kinds_used[1:]):
        legend.edge(f"legend.{first}", f"legend.{second}", style="invis")
    dot.subgraph(legend)
    return dot.source


def render(flow, path: str | Path, detail: Detail = "auto") -> Path:
    """Write the diagram of ``flow`` to ``path``; the format is the suffix (svg, png, pdf, dot).
    ``detail="auto"`` draws the paper detail for large flows, one node per layer for small ones."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise FlowSpecError(f"cannot tell the format of {path}: use a .svg, .png, .pdf or .dot file")
    source = to_dot(flow, detail)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        write_text(path, source)
        return path
    if shutil.which("dot") is None:
        raise FlowSpecError(f"cannot write {path}: the Graphviz `dot` program is not on PATH; "
                            "install Graphviz: apt-get install graphviz (or write a .dot file)")
    try:
        drawing = graphviz.Source(source).pipe(format=fmt)
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as error:
        raise FlowSpecError(f"Graphviz failed to draw {path}: {error}") from None
    return write_bytes(path, drawing)
