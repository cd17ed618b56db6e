"""flowspec: a declarative model-spec compiler for normalizing flows.

    spec = flowspec.load_spec("specs/glow-digits.yaml")
    graph = flowspec.build_graph(spec)
    model = flowspec.compile(spec)
    zs, logdet = model(x)

The names below are imported on first use (PEP 562), so that ``flowspec validate`` and the other
spec tools load the spec and graph layers only, never the compiler, report, data or trainer.
"""

from __future__ import annotations

import importlib

from flowspec import families  # noqa: F401  (registers the flow and vae families: names, no heavy imports)
from flowspec.errors import CheckpointError, DataError, FlowSpecError, ShapeError, SpecError

#: public name -> the module that defines it
_LAZY = {"FlowModel": "flowspec.compile.model", "compile": "flowspec.compile", "load_model": "flowspec.compile.export",
         "save_model": "flowspec.compile.export", "FlowGraph": "flowspec.graph.build",
         "build_graph": "flowspec.graph.build", "Spec": "flowspec.spec.models", "expand": "flowspec.spec.expand",
         "load_spec": "flowspec.spec.loader", "loads_spec": "flowspec.spec.loader"}

__all__ = ["CheckpointError", "DataError", "FlowGraph", "FlowModel", "FlowSpecError", "ShapeError",
           "Spec", "SpecError", "build_graph", "compile", "expand", "load_model", "load_spec", "loads_spec",
           "save_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'flowspec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function (the import above may have set a submodule)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
