"""Compile layer of the pipeline: FlowGraph -> FlowModel (torch), saving, loading and export."""

from __future__ import annotations

import sys
import types

from pydantic import BaseModel

from flowspec.compile.model import FlowModel
from flowspec.family import family_of


def compile(spec) -> FlowModel:  # noqa: A001 - the API name users call
    """Validate ``spec`` (or take an already built graph) and build its family's model: a
    :class:`FlowModel` for a flow spec, a :class:`~flowspec.vae.model.VAEModel` for ``model: vae``, a
    :class:`~flowspec.hvae.model.HVAEModel` for ``model: hvae``."""
    if isinstance(spec, BaseModel):
        family = family_of(spec)
        return family.compile(family.build_graph(spec))
    return family_of(spec.spec).compile(spec)  # an already built graph carries its spec


__all__ = ["FlowModel", "compile"]


class _CallablePackage(types.ModuleType):
    """``flowspec.compile`` names both this package and the function users call, and importing a
    submodule (``flowspec.compile.latents``) rebinds the name to the package: so the package calls
    :func:`compile` too."""

    def __call__(self, spec) -> FlowModel:
        return compile(spec)


sys.modules[__name__].__class__ = _CallablePackage
