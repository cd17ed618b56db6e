"""The ``flow`` family: a normalizing flow of layer kinds (Glow, RealNVP, NICE, Flow++, ...).

Every stage is a reference, imported when first used (:class:`~flowspec.family.Family`)."""

from flowspec.family import Family, register_family

FLOW = register_family(Family(
    name="flow", build_graph="flowspec.graph.build:build_flow_graph", compile="flowspec.compile.model:FlowModel",
    cost_report="flowspec.report.costs:cost_report", measure="flowspec.report.measure:measure",
    check="flowspec.compile.check:check_spec", explicit_spec="flowspec.spec.expand:explicit_spec",
    build_rows="flowspec.compile.build:build_rows", export="flowspec.compile.export:export_programs",
    bench="flowspec.bench.measure:bench", latents="flowspec.compile.latents:FLOW_CODEC"))
