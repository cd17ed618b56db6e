"""Cost report of a flow or VAE spec: params, FLOPs (forward, inverse, log-det), activation memory and
a roofline time per layer (per part of a VAE) on a device profile, all from the graph. See
:mod:`flowspec.report.costs` and, for VAEs, :mod:`flowspec.vae.costs`."""

from __future__ import annotations

from pathlib import Path

from flowspec.family import family_of
from flowspec.report.costs import CostReport, Part, cost_report, count_params, grouped, layer_costs, parts_report
from flowspec.report.devices import Device, DeviceError, get_device, load_devices, measure_cpu
from flowspec.report.format import summary_lines, to_json, to_markdown, to_table, to_text


def report_spec(spec, device: str | Device = "a100", batch: int = 64, dtype: str = "float32",
                devices_file: str | Path | None = None, measure: bool = False) -> CostReport:
    """The :class:`CostReport` of a spec of any family; ``measure`` also times the compiled model."""
    profile = device if isinstance(device, Device) else get_device(device, devices_file)
    family = family_of(spec)
    graph = family.build_graph(spec)
    report = family.cost_report(graph, profile, batch, dtype)
    if measure:
        family.measure(report, family.compile(graph))
    return report


__all__ = ["CostReport", "Device", "DeviceError", "Part", "cost_report", "count_params", "get_device", "grouped",
           "layer_costs", "load_devices", "measure_cpu", "parts_report", "report_spec", "summary_lines", "to_json",
           "to_markdown", "to_table", "to_text"]
