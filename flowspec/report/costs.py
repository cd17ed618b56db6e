"""The cost report of a flow spec, from its graph alone (no weights are allocated).

For a batch of ``N`` and each layer's :class:`~flowspec.layers.base.LayerCost` ``c``:

* FLOPs of a pass = ``N * c.flops_* + c.call_flops_*`` (per-example work plus per-call work such
  as building ``W`` of an LU invconv); the log-det term is counted apart:
  ``c.flops_logdet`` once per call when ``logdet_per_call`` (plain invconv's ``slogdet``,
  ``2 c^3 / 3``; LU's ``sum(log_s)``, ``c``), else ``N`` times.
* training activations = ``4 N c.activations`` bytes (float32), summed over layers (or the
  largest single layer with ``memory: {invertible_backprop: true}``), plus parameters,
  gradients and the two Adam moments, ``16 * params`` bytes.
* a sampling pass keeps every latent's noise and one layer's working set at a time:
  ``4 N (sum latents + max_l (in_l + c_l.activations))`` plus ``4 * params``.
* roofline time of a layer = ``max(compute, bytes / bandwidth) + ops * latency`` with bytes =
  ``4 (params + N (in + activations))`` read or written and ``ops`` the tensor operations it
  dispatches (each pays a fixed launch / framework latency); its bottleneck is the largest term.
  ``compute`` is ``FLOPs / peak`` on a datasheet profile; on a measured device (``cpu``) the
  layer's conv / linear FLOPs go at the rate measured at its own shapes
  (:mod:`flowspec.report.rates`) and the rest at the peak.
  A layer's backward does ``2 x`` its forward's FLOPs (a conv computes input and weight gradients;
  on ``cpu`` its convs at the backward rate measured at their shapes) and moves ``2 x`` its bytes,
  plus one backward latency per op (autograd runs a backward node per recorded op; a device
  profile's ``latency`` unless it gives ``latency_backward``); a training step is forward +
  backward, a sampling pass is the inverse direction.

Roofline model: Williams, Waterman & Patterson, "Roofline", CACM 2009.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from flowspec.graph.build import FlowGraph
from flowspec.layers.base import LayerCost, numel
from flowspec.layers.invconv import InvConvConfig
from flowspec.report.devices import Device
from flowspec.report.rates import matmul_ops

BYTES = 4  # float32
OPTIMIZER_COPIES = 4  # weights, gradients, Adam's two moments
BACKWARD_FACTOR = 2.0  # a conv's backward computes input and weight gradients: 2 x its forward FLOPs
LOGDET_DOMINATES = 0.5  # flag a layer whose log-det term is more than this share of its forward
DEQUANTIZER = "dequantizer"  # its row's name; it runs in training steps only, not when sampling


@dataclass
class LayerRow:
    name: str
    kind: str
    level: int | None
    in_shape: tuple
    out_shape: tuple
    params: int
    flops_forward: float
    flops_inverse: float
    flops_logdet: float
    matmul_flops_forward: float
    matmul_flops_inverse: float
    train_bytes: float
    working_bytes: float
    bytes_moved: float
    time_forward: float = 0.0
    time_inverse: float = 0.0
    bottleneck: str = ""
    logdet_share: float = 0.0
    measured_forward: float | None = None
    time_backward: float = 0.0  # 2 x the forward's FLOPs and bytes + one backward latency per op
    matmul_rate: float | None = None  # FLOP/s its conv / matmul part achieves (measured devices)

    @property
    def logdet_dominates(self) -> bool:
        return self.logdet_share > LOGDET_DOMINATES


@dataclass
class CostReport:
    spec_name: str
    batch: int
    device: str
    dtype: str
    rows: list[LayerRow]
    params: int
    flops_forward: float
    flops_inverse: float
    flops_logdet: float
    train_activation_bytes: float
    train_bytes: float
    sample_bytes: float
    time_forward: float
    time_backward: float
    time_train_step: float
    time_sample: float
    max_train_batch: int
    device_memory: float
    notes: list[str] = field(default_factory=list)
    measured_train_step: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        for row, out in zip(self.rows, data["rows"]):
            out["logdet_dominates"] = row.logdet_dominates
        return data


def _at_batch(cost: LayerCost, batch: int) -> tuple[float, float, float, float, float]:
    logdet = cost.flops_logdet * (1 if cost.logdet_per_call else batch)
    return (batch * cost.flops_forward + cost.call_flops_forward,
            batch * cost.flops_inverse + cost.call_flops_inverse,
            logdet,
            batch * cost.matmul_flops_forward + cost.call_matmul_flops_forward,
            batch * cost.matmul_flops_inverse + cost.call_matmul_flops_inverse)


def top_prior_cost(flow: FlowGraph) -> LayerCost:
    """``log N(z; mu, sigma)``: about 6 FLOPs per entry; sampling ``mu + T sigma eps``: 3."""
    n = numel(flow.output_shape)
    return LayerCost(params=2 * n if flow.spec.prior == "learned" else 0,
                     flops_forward=6.0 * n, flops_inverse=3.0 * n, activations=n, ops=10)


#: Cost rules of the dequantizers by ``dequantization.kind``: ``(config, shape) -> LayerCost``
#: of one training-step pass (it does not run when sampling). A kind without a rule is left out
#: of the report with a note. Add one with :func:`register_dequantizer_cost`.
DEQUANTIZER_COSTS: dict[str, Callable[[object, tuple], LayerCost]] = {}


def register_dequantizer_cost(kind: str):
    def decorate(rule):
        DEQUANTIZER_COSTS[kind] = rule
        return rule
    return decorate


@register_dequantizer_cost("uniform")
def _uniform_cost(config, shape) -> LayerCost:
    """``v = x + u``, ``u ~ U[0,1)``: a draw and an add per entry, no parameters."""
    return LayerCost(flops_forward=2.0 * numel(shape), ops=6)  # rand, add; to model space


def _net_cost(widths: list[tuple[int, int, int]], spatial: int) -> tuple[int, float, int]:
    """(params, matmul FLOPs, hidden elements) of convs / linears ``(in, out, kernel)``."""
    params = sum(i * o * k * k + o for i, o, k in widths)
    flops = sum(2.0 * i * o * k * k * spatial for i, o, k in widths)
    return params, flops, sum(o * spatial for _, o, _ in widths)


@register_dequantizer_cost("variational")
def _variational_cost(config, shape) -> LayerCost:
    """Flow++'s dequantizer (:mod:`flowspec.dequant.variational`): a context network, then per step
    actnorm, LU invconv (2 channels or more) and a coupling whose conditioner also sees the context;
    all on ``eps`` of the data's shape."""
    image, c = len(shape) == 3, shape[0]
    spatial, n = numel(shape[1:]), numel(shape)
    ctx = config.context
    kernel = ctx.kernel if image else 1
    context = [(c if d == 0 else ctx.hidden, ctx.hidden, kernel) for d in range(ctx.depth)]
    params, matmul, hidden = _net_cost(context, spatial)
    call, call_matmul = 0.0, 0.0
    for k in range(config.steps):
        params += 2 * c
        if c >= 2:
            invconv = InvConvConfig(lu=True).cost(shape)
            params, matmul = params + invconv.params, matmul + invconv.matmul_flops_forward
            call, call_matmul = call + invconv.call_flops_forward, call_matmul + invconv.call_matmul_flops_forward
        if image:
            net = [(c + ctx.hidden, config.hidden, 3), (config.hidden, config.hidden, 1), (config.hidden, 2 * c, 3)]
        else:
            transformed = c // 2 if k % 2 == 0 else c - c // 2
            net = [(c - transformed + ctx.hidden, config.hidden, 1), (config.hidden, config.hidden, 1),
                   (config.hidden, 2 * transformed, 1)]
        net_params, net_flops, net_hidden = _net_cost(net, spatial)
        params, matmul, hidden = params + net_params, matmul + net_flops, hidden + net_hidden
    elementwise = 12.0 * n * config.steps
    return LayerCost(params=params, flops_forward=matmul + elementwise, matmul_flops_forward=matmul,
                     activations=hidden + 4 * n * config.steps, call_flops_forward=call,
                     call_matmul_flops_forward=call_matmul, ops=2 * ctx.depth + 45 * config.steps + 12)


def dequantizer_cost(spec) -> LayerCost | None:
    config = getattr(spec, "dequantization", None)
    if config is None:
        return LayerCost()
    rule = DEQUANTIZER_COSTS.get(config.kind)
    return rule(config, tuple(spec.input.shape)) if rule else None


def layer_costs(flow: FlowGraph) -> list[tuple[str, str, int | None, tuple, tuple, LayerCost]]:
    """``(name, kind, level, in, out, cost)`` of the dequantizer (when it has a rule), every layer,
    then the top prior."""
    out = []
    dequantizer = dequantizer_cost(flow.spec)
    if dequantizer is not None:
        shape = flow.input_shape
        out.append((DEQUANTIZER, f"dequantizer ({flow.spec.dequantization.kind})", None, shape, shape,
                    dequantizer))
    out += [(n.name, n.kind, n.level, n.in_shape, n.out_shape, n.config.cost(n.in_shape))
            for n in flow.layers]
    out.append(("prior", f"prior ({flow.spec.prior})", None, flow.output_shape, flow.output_shape,
                top_prior_cost(flow)))
    return out


def count_params(flow: FlowGraph) -> int:
    """Parameters of the compiled model: every layer (split priors included) and the top prior."""
    return sum(cost.params for *_, cost in layer_costs(flow))


def cost_report(flow: FlowGraph, device: Device, batch: int = 64, dtype: str = "float32") -> CostReport:
    peak = device.peak(dtype)
    configs = {node.name: node.config for node in flow.layers}
    rows: list[LayerRow] = []
    for name, kind, level, in_shape, out_shape, cost in layer_costs(flow):
        fwd, inv, logdet, mm_fwd, mm_inv = _at_batch(cost, batch)
        moved = BYTES * (cost.params + batch * (numel(in_shape) + cost.activations))
        memory_time = moved / device.bandwidth
        # conv / matmul FLOPs at the rate achieved at the layer's own shapes when the device
        # measures them (cpu), the rest (and every FLOP on a datasheet profile) at the peak
        shaped, shaped_time, shaped_backward, rate = 0.0, 0.0, 0.0, None
        if device.shape_rates is not None and name in configs:
            for op in matmul_ops(configs[name], tuple(in_shape)):
                flops = batch * op.flops()
                shaped += flops
                shaped_time += flops / device.shape_rates.rate(op, batch, peak)
                shaped_backward += BACKWARD_FACTOR * flops / device.shape_rates.backward_rate(op, batch, peak)
            rate = shaped / shaped_time if shaped_time else None
        rest = max(0.0, fwd + logdet - shaped) / peak
        compute_fwd = shaped_time + rest
        compute_inv = shaped_time + max(0.0, inv + logdet - shaped) / peak
        compute_bwd = shaped_backward + BACKWARD_FACTOR * rest
        latency = cost.ops * device.latency
        roof = max(compute_fwd, memory_time)
        row = LayerRow(name, kind, level, tuple(in_shape), tuple(out_shape), cost.params, fwd, inv,
                       logdet, mm_fwd, mm_inv, BYTES * batch * cost.activations,
                       BYTES * batch * (numel(in_shape) + cost.activations), moved,
                       time_forward=roof + latency,
                       time_inverse=0.0 if name == DEQUANTIZER else max(compute_inv, memory_time) + latency,
                       bottleneck="latency" if latency > roof else "compute" if compute_fwd >= memory_time else "memory",
                       logdet_share=logdet / (fwd + logdet) if fwd + logdet else 0.0,
                       time_backward=max(compute_bwd, BACKWARD_FACTOR * memory_time)
                       + cost.ops * device.latency_backward, matmul_rate=rate)
        rows.append(row)
    params = sum(r.params for r in rows)
    latents = sum(numel(s) for s in flow.latent_shapes)
    invertible = bool(getattr(getattr(flow.spec, "memory", None), "invertible_backprop", False))
    notes = []
    if dequantizer_cost(flow.spec) is None:
        notes.append(f"dequantizer {flow.spec.dequantization.kind}: no cost rule (see "
                     "flowspec.report.costs.register_dequantizer_cost); its parameters and FLOPs are left out")
    if invertible:
        activations = max(r.train_bytes for r in rows) + BYTES * batch * latents
        notes.append("memory: invertible_backprop: training keeps one layer's activations at a "
                     "time (recomputed by inversion), plus the latents")
    else:
        activations = sum(r.train_bytes for r in rows)
    weights = BYTES * OPTIMIZER_COPIES * params
    per_example = activations / batch
    fits = int((device.memory - weights) // per_example) if per_example and device.memory > weights else 0
    for row in rows:
        if row.logdet_dominates:
            notes.append(f"{row.name}: the log-det term is {100 * row.logdet_share:.0f}% of its forward "
                         f"FLOPs ({row.kind} on {row.in_shape[0]} channels at batch {batch})"
                         + ("; lu: true makes it O(c)" if row.kind == "invconv" else ""))
    time_forward = sum(r.time_forward for r in rows)
    time_backward = sum(r.time_backward for r in rows)
    return CostReport(
        spec_name=flow.spec.name or "spec", batch=batch, device=device.name, dtype=dtype, rows=rows,
        params=params, flops_forward=sum(r.flops_forward for r in rows),
        flops_inverse=sum(r.flops_inverse for r in rows),
        flops_logdet=sum(r.flops_logdet for r in rows),
        train_activation_bytes=activations, train_bytes=activations + weights,
        sample_bytes=BYTES * batch * latents + max(r.working_bytes for r in rows if r.name != DEQUANTIZER)
        + BYTES * params,
        time_forward=time_forward, time_backward=time_backward,
        time_train_step=time_forward + time_backward,
        time_sample=sum(r.time_inverse for r in rows), max_train_batch=fits,
        device_memory=device.memory, notes=notes)


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

