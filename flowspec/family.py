"""Model families: what a spec's ``model:`` selects (``flow``, ``vae``).

A :class:`Family` bundles a family's pipeline: graph, compiled model, cost report, measurement,
``check``, ``expand``, ``build``, ``bench`` and the latent tools (its spec model registers with
:func:`flowspec.spec.models.register_spec_model`). Callers (the CLI, report, compile, the runner)
look a family up from the spec and never branch on ``model:``. This module is a leaf of the import
graph; the families register themselves from :mod:`flowspec.families`, which the package imports.
A stage may be given as a ``"module:name"`` reference, imported when it is first used, so that
naming a family costs no import: ``flowspec validate`` loads the spec and graph modules and never
the compiler, report, data or trainer. The compiled models share one interface, the model protocol
(:class:`flowspec.core.protocol.DensityModel`), and the families share the types in
:mod:`flowspec.core` (check result, build row, cost parts, latent codec).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Family:
    """One model family's pipeline, each a function of the previous stage's output. A stage (and
    ``latents``) may be a ``"package.module:name"`` reference: reading it imports that module."""

    name: str
    build_graph: Callable[[Any], Any]  # spec -> graph (validated; allocates no weights)
    compile: Callable[[Any], Any]  # graph -> torch module
    cost_report: Callable[..., Any]  # (graph, device, batch, dtype) -> CostReport
    measure: Callable[..., Any]  # (report, model) -> report with measured times
    check: Callable[..., Any]  # (spec, width=, tolerance=) -> CheckResult
    explicit_spec: Callable[[Any], dict]  # spec -> every compact form and default written out (expand)
    build_rows: Callable[[Any, Any], list]  # (graph, model) -> the build table's rows
    export: Callable[[Any, Any], dict]  # (model, folder) -> {direction: path of its torch.export program}
    bench: Callable[..., Any]  # (spec_path, spec, batch=, repeats=, baselines=, memory=) -> BenchReport
    #: how data and latents map (encode, decode, interpolate, manipulate): a LatentCodec, or None
    latents: Any = None

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if name != "name" and isinstance(value, str):
            return resolve(value)
        return value


def resolve(reference: str):
    """The object a ``"package.module:name"`` reference names (its module imported now)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family_of(spec) -> Family:
    """The family of a parsed spec (its ``model:``)."""
    return FAMILIES[getattr(spec, "model", "flow")]
