"""Cost report of a flow spec: params, FLOPs (forward, inverse, log-det), activation memory and a
roofline time per layer on a device profile, all from the graph. See :mod:`flowspec.report.costs`."""

from __future__ import annotations

from pathlib import Path

from flowspec.report.costs import CostReport, cost_report, count_params, grouped, layer_costs
from flowspec.report.devices import Device, DeviceError, get_device, load_devices, measure_cpu
from flowspec.report.format import summary_lines, to_json, to_markdown, to_table


def report_spec(spec, device: str | Device = "a100", batch: int = 64, dtype: str = "float32",
                devices_file: str | Path | None = None, measure: bool = False) -> CostReport:
    """The :class:`CostReport` of a flow spec; ``measure`` also times the compiled model."""
    from flowspec.graph import build_graph
    from flowspec.vae.config import require_flow

    flow = build_graph(require_flow(spec, "report"))
    profile = device if isinstance(device, Device) else get_device(device, devices_file)
    report = cost_report(flow, profile, batch, dtype)
    if measure:
        from flowspec.compile.model import FlowModel
        from flowspec.report.measure import measure as run_measure

        run_measure(report, FlowModel(flow))
    return report


__all__ = ["CostReport", "Device", "DeviceError", "cost_report", "count_params", "get_device", "grouped",
           "layer_costs", "load_devices", "measure_cpu", "report_spec", "summary_lines", "to_json",
           "to_markdown", "to_table"]
