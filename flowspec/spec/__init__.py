"""Spec layer of the pipeline: YAML -> pydantic models with line numbers -> explicit layer list."""

from flowspec.spec.expand import ExpandedLayer, expand, explicit_spec
from flowspec.spec.loader import load_spec, loads_spec
from flowspec.spec.models import Spec

__all__ = ["ExpandedLayer", "Spec", "expand", "explicit_spec", "load_spec", "loads_spec"]
