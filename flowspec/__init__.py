"""flowspec: a declarative model-spec compiler for normalizing flows.

    spec = flowspec.load_spec("specs/glow-digits.yaml")
    graph = flowspec.build_graph(spec)
    model = flowspec.compile(spec)
    zs, logdet = model(x)
"""

from flowspec import families  # noqa: F401  (registers the flow and vae families)
from flowspec.compile import FlowModel, compile
from flowspec.compile.export import load_model, save_model
from flowspec.errors import CheckpointError, DataError, FlowSpecError, ShapeError, SpecError
from flowspec.graph import FlowGraph, build_graph
from flowspec.spec import Spec, expand, load_spec, loads_spec

__all__ = ["CheckpointError", "DataError", "FlowGraph", "FlowModel", "FlowSpecError", "ShapeError",
           "Spec", "SpecError", "build_graph", "compile", "expand", "load_model", "load_spec", "loads_spec",
           "save_model"]
__version__ = "0.1.0"
