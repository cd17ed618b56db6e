"""The ``flow`` family: a normalizing flow of layer kinds (Glow, RealNVP, NICE, Flow++, ...)."""

from flowspec.compile.check import check_spec
from flowspec.compile.model import FlowModel
from flowspec.family import Family, register_family
from flowspec.graph.build import build_flow_graph
from flowspec.report.costs import cost_report
from flowspec.report.measure import measure

FLOW = register_family(Family(name="flow", build_graph=build_flow_graph, compile=FlowModel,
                              cost_report=cost_report, measure=measure, check=check_spec))
