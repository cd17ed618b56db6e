"""The cost report of a flow spec, from its graph alone (no weights are allocated).

:func:`flow_parts` turns a flow's graph into :class:`~flowspec.core.costs.Part` rows (its
dequantizer, layers and top prior); :func:`~flowspec.core.costs.parts_report`, shared with every
family, turns them into figures (the rules are in :mod:`flowspec.core.costs`). :func:`grouped`
sums rows per step or level; the ``fmt_*`` helpers print figures.
"""

from __future__ import annotations

# the family-neutral parts live in flowspec.core.costs; their names stay importable from here
from flowspec.core.costs import (BACKWARD_FACTOR, BYTES, LOGDET_DOMINATES, OPTIMIZER_COPIES,  # noqa: F401
                                 CostReport, LayerRow, Part, parts_report)
from flowspec.graph.build import FlowGraph
from flowspec.graph.condition import top_prior_context
from flowspec.layers.base import LayerCost, MatmulOp, numel
from flowspec.report.devices import Device
from flowspec.report.rates import matmul_ops

DEQUANTIZER = "dequantizer"  # its row's name; it runs in training steps only, not when sampling


def top_prior_cost(flow: FlowGraph) -> LayerCost:
    """``log N(z; mu, sigma)``: about 6 FLOPs per entry; sampling ``mu + T sigma eps``: 3.
    Logistic (no parameters): ``-(softplus(z) + softplus(-z))``, a negation, two softplus of 3
    (exp, log1p, threshold select), an add and the sum: 9 per entry; sampling
    ``T sign(eps) (log1p(-p) - log p)`` with ``p = erfc(|eps| / sqrt 2) / 2`` clamped: abs, scale,
    erfc, half, clamp, log1p, log, subtract, sign, two products: 11 (a special function counted as
    one FLOP, as exp is for the Gaussian)."""
    n = numel(flow.output_shape)
    if flow.spec.prior == "logistic":
        return LayerCost(flops_forward=9.0 * n, flops_inverse=11.0 * n, activations=n, ops=7)
    shift = 2 * n * top_prior_context(flow.spec)  # a conditional prior: (mu, log sigma) += W h, no bias
    learned = {"learned": 2 * n, "learned_channel": 2 * flow.output_shape[0]}.get(flow.spec.prior, 0)
    return LayerCost(params=learned + shift,
                     flops_forward=6.0 * n + 2.0 * shift, flops_inverse=3.0 * n + 2.0 * shift,
                     matmul_flops_forward=2.0 * shift, matmul_flops_inverse=2.0 * shift,
                     activations=n, ops=10 + (3 if shift else 0))


def flow_parts(flow: FlowGraph) -> list[Part]:
    """The dequantizer (its config's ``cost(shape)``: one training-step pass; it does not run when
    sampling; none for continuous data), the condition's embedding (its config's ``cost()``), every
    layer (its config's ``cost(in_shape, context)``), then the top prior."""
    shape = tuple(flow.input_shape)
    dequantization = flow.spec.dequantization
    parts = []
    if not getattr(flow.spec.input, "continuous", False):
        parts.append(Part(DEQUANTIZER, f"dequantizer ({dequantization.kind})", None, shape, shape,
                          dequantization.cost(shape), sampling=False))
    condition = getattr(flow.spec, "condition", None)
    if condition is not None:
        features = (condition.features,)
        parts.append(Part("condition", f"condition ({condition.kind})", None,
                          (condition.dim,) if condition.kind == "vector" else (1,), features,
                          condition.cost(), tuple(condition.matmul_ops())))
    for n in flow.layers:
        cost = n.config.cost(n.in_shape, flow.context_of(n))
        parts.append(Part(n.name, n.kind, n.level, n.in_shape, n.out_shape, cost,
                          tuple(matmul_ops(n.config, tuple(n.in_shape), flow.context_of(n))),
                          call_activations=cost.call_activations))
    top = top_prior_context(flow.spec)
    parts.append(Part("prior", f"prior ({flow.spec.prior})", None, flow.output_shape, flow.output_shape,
                      top_prior_cost(flow), tuple([MatmulOp(top, 2 * numel(flow.output_shape), 1, ())] if top else ())))
    return parts


def layer_costs(flow: FlowGraph) -> list[tuple[str, str, int | None, tuple, tuple, LayerCost]]:
    """``(name, kind, level, in, out, cost)`` of the dequantizer, every layer, then the top prior."""
    return [(p.name, p.kind, p.level, p.in_shape, p.out_shape, p.cost) for p in flow_parts(flow)]


def count_params(flow: FlowGraph) -> int:
    """Parameters of the compiled model: every layer (split priors included) and the top prior."""
    return sum(cost.params for *_, cost in layer_costs(flow))


def cost_report(flow: FlowGraph, device: Device, batch: int = 64, dtype: str = "float32") -> CostReport:
    """The :class:`CostReport` of a flow's graph (see :func:`parts_report`)."""
    invertible = bool(getattr(getattr(flow.spec, "memory", None), "invertible_backprop", False))
    return parts_report(flow.spec.name or "spec", flow_parts(flow), device, batch, dtype,
                        latents=sum(numel(s) for s in flow.latent_shapes), invertible=invertible)


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

