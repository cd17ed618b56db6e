"""The ``paper`` detail: a diagram in the style of Glow's Figure 2 (Kingma & Dhariwal 2018,
arXiv:1807.03039), where each distinct repeated block is drawn once inside a "× K" box.

The graph's nodes, in flow order, are folded by their signature (a layer's config without its
name; another node's kind and cluster): a run of ``count >= 2`` equal consecutive blocks becomes
one :class:`Fold` holding the first repetition, folded again inside (the steps of a level). For
Glow this gives ``[squeeze, [actnorm, invconv, coupling] × K, split] × (L−1)``, then the last
level's squeeze and K steps. A block equal to one already drawn (the last level's steps) becomes
one node that says so. Edges keep the tensor shapes of every repetition (``12x16x16 | 24x8x8``),
and a note lists the shapes per level. Priors of factored latents stay with their split.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import graphviz

MAX_BLOCK = 512  # longest block looked for; a step of flow is a few layers


@dataclass
class Unit:
    """A node of the graph with the nodes attached to it (the prior of a split's latent)."""

    node: str
    attached: list[str] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [self.node] + self.attached


@dataclass
class Fold:
    """``count`` consecutive repetitions of a block; ``body`` is the first, folded again."""

    body: list
    count: int
    repetitions: list[list]
    signature: tuple = ()


def _signature(data: dict) -> tuple:
    node = data.get("node")
    if node is not None:
        exclude = {"name", *node.config.per_copy_fields}  # per-copy draws fold as one block
        return ("layer", json.dumps(node.config.model_dump(mode="json", exclude=exclude), sort_keys=True))
    return (str(data.get("kind")), str(data.get("cluster")), str(data.get("prior", "")))


def units(graph) -> tuple[list[Unit], list[tuple]]:
    """The graph's nodes in flow order (topological, ties by insertion) as units, and their
    signatures; the prior of a factored
    latent rides with its split so that a level's block stays one repeated unit."""
    attached_to: dict[str, str] = {}
    for name, data in graph.nodes(data=True):
        node = data.get("node")
        if node is not None and node.factored_shape is not None:
            for successor in graph.successors(name):
                if graph.nodes[successor].get("kind") == "prior":
                    attached_to[successor] = name
    inserted = {name: i for i, name in enumerate(graph.nodes)}
    out, signatures, index = [], [], {}
    for name in graph.topological_order(key=inserted.__getitem__):
        data = graph.nodes[name]
        if name in attached_to:
            continue
        index[name] = len(out)
        out.append(Unit(name))
        signatures.append(_signature(data))
    for prior, owner in attached_to.items():
        unit = out[index[owner]]
        unit.attached.append(prior)
        signatures[index[owner]] += (_signature(graph.nodes[prior]),)
    return out, signatures


def fold(items: list, signatures: list) -> list:
    """Fold runs of equal consecutive blocks, greedily from the left, longest cover first (the
    shorter block on a tie), then fold inside each block's first repetition."""
    keys = {s: i for i, s in enumerate(dict.fromkeys(signatures))}
    sig = [keys[s] for s in signatures]
    out, i, n = [], 0, len(items)
    while i < n:
        best_cover, best_block, best_count = 0, 1, 1
        for block in range(1, min(MAX_BLOCK, (n - i) // 2) + 1):
            if sig[i + block] != sig[i] or sig[i:i + block] != sig[i + block:i + 2 * block]:
                continue
            count = 2
            while sig[i + count * block:i + (count + 1) * block] == sig[i:i + block]:
                count += 1
            if count * block > best_cover:
                best_cover, best_block, best_count = count * block, block, count
        if best_count > 1:
            body = items[i:i + best_block]
            reps = [items[i + r * best_block:i + (r + 1) * best_block] for r in range(best_count)]
            out.append(Fold(fold(body, signatures[i:i + best_block]), best_count, reps,
                            tuple(signatures[i:i + best_block])))
            i += best_cover
        else:
            out.append(items[i])
            i += 1
    return out


def _leaves(items: list) -> list[Unit]:
    found = []
    for item in items:
        found += _leaves(item.body) if isinstance(item, Fold) else [item]
    return found


def _flat(items: list) -> list[Unit]:
    """Every unit of a (folded) list, every repetition included."""
    found = []
    for item in items:
        if isinstance(item, Fold):
            for rep in item.repetitions:
                found += _flat(rep)
        else:
            found.append(item)
    return found


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_short(v)}" for k, v in value.items() if k != "name")
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def node_label(data: dict) -> tuple[str, str]:
    """(label, kind) of a node: a layer's kind and the fields it sets away from their defaults."""
    kind = str(data.get("kind", "layer"))
    node = data.get("node")
    if node is not None:
        fields = node.config.model_dump(mode="json", exclude_defaults=True, exclude={"kind", "name"})
        details = ", ".join(f"{k}: {_short(v)}" for k, v in fields.items())
        return (f"{kind}\n{details}" if details else kind), kind
    if kind == "prior":
        return f"prior\n{data.get('prior', '')}", kind
    if kind == "input":
        return "input x\n" + "x".join(map(str, data.get("shape", ()))), kind
    formula = data.get("formula")
    return (f"{kind}\n{formula}" if formula else kind), kind


def level_shapes(flow, shape_text) -> list[str]:
    """One line per level: what enters it, after its squeeze, what leaves it and what it factors out."""
    levels: dict[int, list] = {}
    for node in getattr(flow, "layers", []):
        if getattr(node, "level", None) is not None:
            levels.setdefault(node.level, []).append(node)
    lines = []
    for level, nodes in levels.items():
        text = f"level {level}: {shape_text(nodes[0].in_shape)}"
        if nodes[0].config.spatial_factor > 1:
            text += f" → {nodes[0].kind} {shape_text(nodes[0].out_shape)}"
        factored = [n.factored_shape for n in nodes if n.factored_shape is not None]
        if factored:
            text += f" → split {shape_text(nodes[-1].out_shape)} + z {shape_text(factored[-1])}"
        else:
            text += f" → z {shape_text(nodes[-1].out_shape)}"
        lines.append(text)
    return lines


def _fold_label(item: Fold, graph, spec) -> str:
    nodes = [graph.nodes[u.node].get("node") for u in _leaves(item.body)]
    levels, steps = getattr(spec, "levels", None), getattr(spec, "steps", None)
    if steps and item.count == steps and nodes and all(n is not None and n.step is not None for n in nodes):
        return f"× K  (K = {steps})"
    if levels and item.count == levels - 1 and any(n is not None and n.step is None and n.level is not None
                                                   for n in nodes):
        return f"× (L−1)  (L = {levels})"
    return f"× {item.count}"


def to_paper_dot(flow, parts: list, colour, cluster_style: dict, shape_text) -> str:
    """DOT source of the paper detail of ``flow`` (see the module docstring)."""
    graph, spec = flow.graph, flow.spec
    items, signatures = units(graph)
    folded = fold(items, signatures)
    rep: dict[str, str] = {}  # node -> the node drawn for it
    order: dict[str, int] = {}
    drawn_blocks: set[tuple] = set()
    collapsed: dict[str, tuple[str, str]] = {}  # collapsed node id -> (label, kind)

    def assign(elements: list) -> None:
        for item in elements:
            if isinstance(item, Unit):
                for name in item.ids():
                    rep.setdefault(name, name)
                    order.setdefault(rep[name], len(order))
                continue
            if item.signature in drawn_blocks:  # drawn above: one node stands for it
                node_id = f"fold{len(collapsed)}"
                kinds = " → ".join(dict.fromkeys(str(graph.nodes[u.node].get("kind")) for u in _leaves(item.body)))
                label = f"{kinds}\n{_fold_label(item, graph, spec)}\n(as drawn above)"
                collapsed[node_id] = (label, "group")
                order[node_id] = len(order)
                for unit in _flat([item]):
                    for name in unit.ids():
                        rep[name] = node_id
                continue
            drawn_blocks.add(item.signature)
            first = _flat(item.repetitions[0])
            for other in item.repetitions[1:]:
                for unit, same in zip(_flat(other), first):
                    for name, target in zip(unit.ids(), same.ids()):
                        rep[name] = target
            assign(item.body)

    assign(folded)

    def resolve(name: str) -> str:
        while rep.get(name, name) != name:
            name = rep[name]
        return name

    title = f"{spec.name or 'flow'} (paper detail)"
    if getattr(spec, "levels", None):
        title += f": L = {spec.levels} levels, K = {spec.steps} steps each"
    dot = graphviz.Digraph(name=spec.name or "flow", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "label": title, "labelloc": "t", "compound": "true",
        "nodesep": "0.25", "ranksep": "0.3"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    kinds_used: list[str] = []
    counter = itertools.count()

    def add_node(target, node_id: str, label: str, kind: str) -> None:
        target.node(node_id, label, fillcolor=colour(kind))
        if kind not in kinds_used:
            kinds_used.append(kind)

    def emit(elements: list, target) -> None:
        for item in elements:
            if isinstance(item, Unit):
                for name in item.ids():
                    if resolve(name) == name:
                        add_node(target, name, *node_label(graph.nodes[name]))
                    elif resolve(name) in collapsed and resolve(name) not in emitted:
                        emitted.add(resolve(name))
                        add_node(target, resolve(name), *collapsed[resolve(name)])
                continue
            first = _leaves(item.body)[0].node
            if resolve(first) in collapsed:
                if resolve(first) not in emitted:
                    emitted.add(resolve(first))
                    add_node(target, resolve(first), *collapsed[resolve(first)])
                continue
            box = graphviz.Digraph(name=f"cluster_fold{next(counter)}")
            box.attr(label=_fold_label(item, graph, spec), labeljust="r", style="rounded,dashed",
                     color="#1d4ed8", fontcolor="#1d4ed8", fontsize="12")
            emit(item.body, box)
            target.subgraph(box)

    emitted: set[str] = set()
    groups: list[tuple[str | None, list]] = []  # consecutive items of one part cluster
    for item in folded:
        first = _leaves(item.body)[0] if isinstance(item, Fold) else item
        cluster = graph.nodes[first.node].get("cluster")
        cluster = str(cluster) if cluster else None
        if groups and groups[-1][0] == cluster:
            groups[-1][1].append(item)
        else:
            groups.append((cluster, [item]))
    for cluster, elements in groups:
        if cluster is None:
            emit(elements, dot)
            continue
        box = graphviz.Digraph(name=f"cluster_{cluster}_{next(counter)}".replace(" ", "_"))
        box.attr(label=cluster, **cluster_style.get(cluster, cluster_style["default"]))
        emit(elements, box)
        dot.subgraph(box)
    for part in parts:
        box = graphviz.Digraph(name=f"cluster_{part.cluster}".replace(" ", "_"))
        box.attr(label=part.label, **cluster_style.get(part.cluster, cluster_style["default"]))
        for node_id, label, kind in part.nodes:
            add_node(box, node_id, label, kind)
        dot.subgraph(box)

    edges: dict[tuple[str, str], dict] = {}
    for source, target, data in graph.edges(data=True):
        a, b = resolve(source), resolve(target)
        if a == b or order.get(a, 0) >= order.get(b, 0):
            continue  # inside a collapsed block, or the loop back to a block's first repetition
        entry = edges.setdefault((a, b), {"shapes": [], "latent": data.get("latent"), "context": data.get("context")})
        text = shape_text(data.get("shape", ()))
        if text not in entry["shapes"]:
            entry["shapes"].append(text)
    for (a, b), entry in edges.items():
        attrs = {"style": "dashed", "color": "#b91c1c"} if entry["latent"] else \
            {"style": "dotted", "color": "#6b7280"} if entry["context"] else {}
        dot.edge(a, b, label=" | ".join(entry["shapes"]), **attrs)
    for part in parts:
        for source, target, shape in part.edges:
            dot.edge(source, resolve(target), label=shape_text(shape))

    lines = level_shapes(flow, shape_text)
    if lines:
        dot.node("shapes", "shapes per level\\l" + "\\l".join(lines) + "\\l", shape="note", style="filled",
                 fillcolor="#f9fafb", fontname="Helvetica", fontsize="9")
    legend = graphviz.Digraph(name="cluster_legend")
    legend.attr(label="legend", **cluster_style["legend"])
    for kind in kinds_used:
        legend.node(f"legend.{kind}", "repeated block" if kind == "group" else kind, fillcolor=colour(kind))
    for first, second in zip(kinds_used, kinds_used[1:]):
        legend.edge(f"legend.{first}", f"legend.{second}", style="invis")
    dot.subgraph(legend)
    return dot.source
