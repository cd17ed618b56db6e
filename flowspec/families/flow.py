"""The ``flow`` family: a normalizing flow of layer kinds (Glow, RealNVP, NICE, Flow++, ...)."""

from flowspec.compile.build import build_rows
from flowspec.compile.check import check_spec
from flowspec.compile.export import export_programs
from flowspec.compile.latents import FLOW_CODEC
from flowspec.compile.model import FlowModel
from flowspec.family import Family, register_family
from flowspec.graph.build import build_flow_graph
from flowspec.report.costs import cost_report
from flowspec.report.measure import measure
from flowspec.spec.expand import explicit_spec


def bench(*args, **kwargs):
    """:func:`flowspec.bench.measure.bench`, imported on use (its FLOP counter and conv replays
    stay out of every verb's start-up)."""
    from flowspec.bench.measure import bench as measure_bench

    return measure_bench(*args, **kwargs)


FLOW = register_family(Family(name="flow", build_graph=build_flow_graph, compile=FlowModel,
                              cost_report=cost_report, measure=measure, check=check_spec,
                              explicit_spec=explicit_spec, build_rows=build_rows, export=export_programs, bench=bench,
                              latents=FLOW_CODEC))
