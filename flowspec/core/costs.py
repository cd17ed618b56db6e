"""The cost report of any family's spec, from its parts alone (no weights are allocated).

A report is built from :class:`Part` rows: a flow's dequantizer, layers and top prior
(:func:`flowspec.report.costs.flow_parts`), or a VAE's encoder, posterior sample, IAF steps, decoder, likelihood and
prior (:func:`flowspec.vae.costs.vae_parts`); :func:`parts_report` turns them into figures.

For a batch of ``N`` and each layer's :class:`LayerCost` ``c``:

* FLOPs of a pass = ``N * c.flops_* + c.call_flops_*`` (per-example work plus per-call work such
  as building ``W`` of an LU invconv); the log-det term is counted apart:
  ``c.flops_logdet`` once per call when ``logdet_per_call`` (plain invconv's ``slogdet``,
  ``2 c^3 / 3``; LU's ``sum(log_s)``, ``c``), else ``N`` times.
* training activations = ``4 N c.activations`` bytes (float32; plus ``4 part.call_activations``
  kept once per call, a VAE's masked MADE weights), summed over layers (or the
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

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Protocol


Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    """Elements of one example of ``shape`` (the batch excluded)."""
    return math.prod(shape)


class DeviceProfile(Protocol):
    """What :func:`parts_report` reads of a device (:class:`flowspec.report.devices.Device`
    implements it): its peak FLOP/s per dtype, bandwidth (bytes/s), memory (bytes), per-op
    latencies (s) and, on a measured device, the rates at a layer's own conv / linear shapes."""

    name: str
    bandwidth: float
    memory: float
    latency: float
    shape_rates: object | None

    @property
    def latency_backward(self) -> float: ...

    def peak(self, dtype: str) -> float: ...


BYTES = 4  # float32
OPTIMIZER_COPIES = 4  # weights, gradients, Adam's two moments
BACKWARD_FACTOR = 2.0  # a conv's backward computes input and weight gradients: 2 x its forward FLOPs
LOGDET_DOMINATES = 0.5  # flag a layer whose log-det term is more than this share of its forward


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer at one input shape, per example (multiply by the batch size).

    ``flops_*`` count multiply-adds as 2 FLOPs. ``matmul_flops_*`` is the conv/matmul part that
    torch's FlopCounterMode sees; ``flops_logdet`` is the log-det term alone (e.g. ``slogdet``'s
    O(c^3), once per call, not per example -- see ``logdet_per_call``).
    """

    params: int = 0
    flops_forward: float = 0.0
    flops_inverse: float = 0.0
    matmul_flops_forward: float = 0.0
    matmul_flops_inverse: float = 0.0
    flops_logdet: float = 0.0
    logdet_per_call: bool = False
    activations: int = 0  # elements kept for the backward pass of a training step
    #: FLOPs paid once per call whatever the batch (building ``W`` or ``W^{-1}`` from parameters)
    call_flops_forward: float = 0.0
    call_flops_inverse: float = 0.0
    call_matmul_flops_forward: float = 0.0  # the part of call_flops_* that is a matmul
    call_matmul_flops_inverse: float = 0.0
    #: tensor operations one forward call dispatches (in eager PyTorch each costs a fixed latency,
    #: which dominates small layers; the report's roofline adds ``ops * latency``)
    ops: int = 0
    #: elements a training step keeps once per call whatever the batch (masked weights ``W * M``)
    call_activations: int = 0
    #: what the report suggests when the log-det term dominates this layer's FLOPs
    logdet_hint: str = ""


class MatmulOp(NamedTuple):
    """A conv (``spatial = (H, W)``, ``kernel`` k, padding ``k // 2``) or a linear
    (``spatial = ()``, ``kernel`` 1) from ``cin`` to ``cout`` channels / features; a conv with
    ``channels_last`` is timed in that layout, as the conv conditioners run it."""

    cin: int
    cout: int
    kernel: int
    spatial: tuple
    channels_last: bool = False

    def flops(self) -> float:
        """Per example: 2 FLOPs per multiply-add."""
        return 2.0 * self.cin * self.cout * self.kernel ** 2 * max(1, math.prod(self.spatial))


@dataclass(frozen=True)
class Part:
    """One row of a report before it meets a device: a flow layer, or a part of a VAE.

    ``matmuls`` are its conv / linear ops per example (their FLOPs go at the rate measured at
    their own shapes on ``--device cpu``); ``sampling`` is False for parts a sampling pass does
    not run (a dequantizer, a VAE's encoder and posterior): their inverse time is 0 and they are
    left out of the sampling memory. ``call_activations`` are elements a training step keeps once
    per call whatever the batch (an IAF step's masked weights ``W * M``)."""

    name: str
    kind: str
    level: int | None
    in_shape: tuple
    out_shape: tuple
    cost: LayerCost
    matmuls: tuple[MatmulOp, ...] = ()
    sampling: bool = True
    call_activations: int = 0


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


def parts_report(spec_name: str, parts: list[Part], device: DeviceProfile, batch: int = 64, dtype: str = "float32",
                 latents: int = 0, invertible: bool = False) -> CostReport:
    """Figures of ``parts`` at ``batch`` on ``device`` (the module docstring's rules); ``latents``
    is the number of latent entries a sampling pass draws per example, ``invertible`` that training
    keeps one part's activations at a time (``memory: {invertible_backprop: true}``)."""
    peak = device.peak(dtype)
    rows: list[LayerRow] = []
    for part in parts:
        cost, in_shape = part.cost, part.in_shape
        fwd, inv, logdet, mm_fwd, mm_inv = _at_batch(cost, batch)
        moved = BYTES * (cost.params + batch * (numel(in_shape) + cost.activations) + part.call_activations)
        memory_time = moved / device.bandwidth
        # conv / matmul FLOPs at the rate achieved at the layer's own shapes when the device
        # measures them (cpu), the rest (and every FLOP on a datasheet profile) at the peak
        shaped, shaped_time, shaped_backward, rate = 0.0, 0.0, 0.0, None
        if device.shape_rates is not None and part.matmuls:
            for op in part.matmuls:
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
        row = LayerRow(part.name, part.kind, part.level, tuple(in_shape), tuple(part.out_shape), cost.params,
                       fwd, inv, logdet, mm_fwd, mm_inv, BYTES * (batch * cost.activations + part.call_activations),
                       BYTES * batch * (numel(in_shape) + cost.activations), moved,
                       time_forward=roof + latency,
                       time_inverse=max(compute_inv, memory_time) + latency if part.sampling else 0.0,
                       bottleneck="latency" if latency > roof else "compute" if compute_fwd >= memory_time else "memory",
                       logdet_share=logdet / (fwd + logdet) if fwd + logdet else 0.0,
                       time_backward=max(compute_bwd, BACKWARD_FACTOR * memory_time)
                       + cost.ops * device.latency_backward, matmul_rate=rate)
        rows.append(row)
    params = sum(r.params for r in rows)
    notes = []
    if invertible:
        activations = max(r.train_bytes for r in rows) + BYTES * batch * latents
        notes.append("memory: invertible_backprop: training keeps one layer's activations at a "
                     "time (recomputed by inversion), plus the latents")
    else:
        activations = sum(r.train_bytes for r in rows)
    weights = BYTES * OPTIMIZER_COPIES * params
    per_example = activations / batch
    fits = int((device.memory - weights) // per_example) if per_example and device.memory > weights else 0
    for row, part in zip(rows, parts):
        if row.logdet_dominates:
            notes.append(f"{row.name}: the log-det term is {100 * row.logdet_share:.0f}% of its forward "
                         f"FLOPs ({row.kind} on {row.in_shape[0]} channels at batch {batch})"
                         + (f"; {part.cost.logdet_hint}" if part.cost.logdet_hint else ""))
    time_forward = sum(r.time_forward for r in rows)
    time_backward = sum(r.time_backward for r in rows)
    sampled = [row for row, part in zip(rows, parts) if part.sampling]
    return CostReport(
        spec_name=spec_name, batch=batch, device=device.name, dtype=dtype, rows=rows,
        params=params, flops_forward=sum(r.flops_forward for r in rows),
        flops_inverse=sum(r.flops_inverse for r in rows),
        flops_logdet=sum(r.flops_logdet for r in rows),
        train_activation_bytes=activations, train_bytes=activations + weights,
        sample_bytes=BYTES * batch * latents + max((r.working_bytes for r in sampled), default=0.0)
        + BYTES * params,
        time_forward=time_forward, time_backward=time_backward,
        time_train_step=time_forward + time_backward,
        time_sample=sum(r.time_inverse for r in rows), max_train_batch=fits,
        device_memory=device.memory, notes=notes)
