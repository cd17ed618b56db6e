"""The cost report of a flow spec, from its graph alone (no weights are allocated).

:func:`flow_parts` turns a flow's graph into :class:`~flowspec.core.costs.Part` rows, one per node
(:attr:`~flowspec.graph.build.FlowGraph.nodes`: each node carries its kind's cost rule at its shapes); :func:`~flowspec.core.costs.parts_report`, shared with every
family, turns them into figures (the rules are in :mod:`flowspec.core.costs`). :func:`grouped`
sums rows per step or level; the ``fmt_*`` helpers print figures.
"""

from __future__ import annotations

# the family-neutral parts live in flowspec.core.costs; their names stay importable from here
from flowspec.core.costs import (BACKWARD_FACTOR, BYTES, LOGDET_DOMINATES, OPTIMIZER_COPIES,  # noqa: F401
                                 CostReport, LayerRow, Part, parts_report)
from flowspec.graph.build import FlowGraph
from flowspec.core.costs import LayerCost, numel
from flowspec.report.devices import Device

DEQUANTIZER = "dequantizer"  # its row's name (the node's); it runs in training steps only, not when sampling


def top_prior_cost(flow: FlowGraph) -> LayerCost:
    """The top prior's kind's cost rule at the latent's shape, shifted by the condition's features
    when ``condition.prior`` is ``conditional`` (its node's cost)."""
    return flow.top_prior.cost


def flow_parts(flow: FlowGraph) -> list[Part]:
    """One row per node of the graph (:attr:`FlowGraph.nodes`: the dequantizer, which does not run
    when sampling, the typed columns, the condition's embedding, every layer, the top prior), each
    the node's own cost rule at the node's shapes and context."""
    return [Part(node.name, node.kind, node.level, node.in_shape, node.out_shape, node.cost, node.matmuls,
                 sampling=node.sampling, call_activations=node.cost.call_activations)
            for node in flow.nodes]


def layer_costs(flow: FlowGraph) -> list[tuple[str, str, int | None, tuple, tuple, LayerCost]]:
    """``(name, kind, level, in, out, cost)`` of the dequantizer, every layer, then the top prior."""
    return [(p.name, p.kind, p.level, p.in_shape, p.out_shape, p.cost) for p in flow_parts(flow)]


def count_params(flow: FlowGraph) -> int:
    """Parameters of the compiled model: every layer (split priors included) and the top prior."""
    return sum(cost.params for *_, cost in layer_costs(flow))


def cost_report(flow: FlowGraph, device: Device, batch: int = 64, dtype: str = "float32") -> CostReport:
    """The :class:`CostReport` of a flow's graph (see :func:`parts_report`)."""
    invertible = bool(getattr(getattr(flow.spec, "memory", None), "invertible_backprop", False))
    report = parts_report(flow.spec.name or "spec", flow_parts(flow), device, batch, dtype,
                          latents=sum(numel(s) for s in flow.latent_shapes), invertible=invertible)
    report.notes += layer_notes(flow)
    return report


def layer_notes(flow: FlowGraph) -> list[str]:
    """Each layer kind's own report lines (:meth:`~flowspec.layers.base.LayerConfig.report_notes`),
    a line shared by several layers given once with their names."""
    owners: dict[str, list[str]] = {}
    for node in flow.layers:
        for note in node.config.report_notes(tuple(node.in_shape), flow.context_of(node)):
            owners.setdefault(note, []).append(node.name)
    return [f"{names[0] if len(names) == 1 else f'{names[0]} .. {names[-1]} ({len(names)} layers)'}: {note}"
            for note, names in owners.items()]


def _group_key(name: str, level: int | None, detail: str) -> str:
    if level is None or detail == "layer":
        return name
    if detail == "level":
        return f"level{level}"
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].startswith("step") else name


def grouped(report: CostReport, detail: str = "layer") -> CostReport:
    """A copy of ``report`` whose rows are summed per step (``level{L}.step{K}``) or per level;
    a group's bottleneck is that of its slowest layer and its input is its first layer's."""
    if detail == "layer":
        return report
    groups: dict[str, list[LayerRow]] = {}
    for row in report.rows:
        groups.setdefault(_group_key(row.name, row.level, detail), []).append(row)
    rows = []
    for key, members in groups.items():
        if len(members) == 1:
            rows.append(members[0])
            continue
        kinds = list(dict.fromkeys(m.kind for m in members))
        slowest = max(members, key=lambda m: m.time_forward)
        total = LayerRow(key, "+".join(kinds), members[0].level, members[0].in_shape, members[-1].out_shape,
                         **{f: sum(getattr(m, f) for m in members) for f in (
                             "params", "flops_forward", "flops_inverse", "flops_logdet", "matmul_flops_forward",
                             "matmul_flops_inverse", "train_bytes", "bytes_moved", "time_forward",
                             "time_inverse", "time_backward")},
                         working_bytes=max(m.working_bytes for m in members), bottleneck=slowest.bottleneck)
        total.logdet_share = max(m.logdet_share for m in members)
        measured = [m.measured_forward for m in members]
        total.measured_forward = None if None in measured else sum(measured)
        rows.append(total)
    return CostReport(**{**report.__dict__, "rows": rows})


def largest_batch_note(report: CostReport) -> str:
    return (f"largest training batch that fits in {report.device_memory / 2 ** 30:.0f} GiB: "
            f"{report.max_train_batch:,}" if report.max_train_batch else
            "the weights and optimizer state alone do not fit in device memory")


def fmt_flops(value: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def fmt_bytes(value: float) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"

