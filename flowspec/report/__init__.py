"""Cost report of a flow or VAE spec: params, FLOPs (forward, inverse, log-det), activation memory and
a roofline time per layer (per part of a VAE) on a device profile, all from the graph. See
:mod:`flowspec.report.costs` and, for VAEs, :mod:`flowspec.vae.costs`."""

from __future__ import annotations

from pathlib import Path

from flowspec.report.costs import (CostReport, Part, cost_report, count_params, grouped, layer_costs, parts_report,
                                   vae_cost_report)
from flowspec.report.devices import Device, DeviceError, get_device, load_devices, measure_cpu
from flowspec.report.format import summary_lines, to_json, to_markdown, to_table, to_text


def report_spec(spec, device: str | Device = "a100", batch: int = 64, dtype: str = "float32",
                devices_file: str | Path | None = None, measure: bool = False) -> CostReport:
    """The :class:`CostReport` of a flow or VAE spec; ``measure`` also times the compiled model."""
    profile = device if isinstance(device, Device) else get_device(device, devices_file)
    if getattr(spec, "model", "flow") == "vae":
        from flowspec.report.measure import measure_vae as run_measure
        from flowspec.vae.graph import build_vae_graph
        from flowspec.vae.model import VAEModel as Model

        graph = build_vae_graph(spec)
        report = vae_cost_report(graph, profile, batch, dtype)
    else:
        from flowspec.compile.model import FlowModel as Model
        from flowspec.graph import build_graph
        from flowspec.report.measure import measure as run_measure

        graph = build_graph(spec)
        report = cost_report(graph, profile, batch, dtype)
    if measure:
        run_measure(report, Model(graph))
    return report


__all__ = ["CostReport", "Device", "DeviceError", "Part", "cost_report", "count_params", "get_device", "grouped",
           "layer_costs", "load_devices", "measure_cpu", "parts_report", "report_spec", "summary_lines", "to_json",
           "to_markdown", "to_table", "to_text", "vae_cost_report"]
