"""Model families: what a spec's ``model:`` selects (``flow``, ``vae``).

A :class:`Family` bundles a family's pipeline (its spec model registers with
:func:`flowspec.spec.models.register_spec_model`): graph, compiled model, cost
report, measurement and ``flowspec check``. Callers (the CLI, report, compile, the runner) look a
family up from the spec and never branch on ``model:``. This module is a leaf of the import graph;
the families register themselves from :mod:`flowspec.families`, which the package imports.
The compiled models share one interface: ``bits_per_dim(x, k=1)``, ``elbo(x)``,
``sample(n, temperature, generator)``, ``to_data_space(y)``, ``initialize(x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from flowspec.errors import Problem, SpecError


@dataclass(frozen=True)
class Family:
    """One model family's pipeline, each a function of the previous stage's output."""

    name: str
    build_graph: Callable[[Any], Any]  # spec -> graph (validated; allocates no weights)
    compile: Callable[[Any], Any]  # graph -> torch module
    cost_report: Callable[..., Any]  # (graph, device, batch, dtype) -> CostReport
    measure: Callable[..., Any]  # (report, model) -> report with measured times
    check: Callable[..., Any]  # (spec, width=, tolerance=) -> CheckResult
    #: the verbs that work on an explicit layer list (expand's rows, build's layer table)
    has_layer_list: bool = True


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def family_of(spec) -> Family:
    """The family of a parsed spec (its ``model:``)."""
    return FAMILIES[getattr(spec, "model", "flow")]


def require_layer_list(spec, verb: str):
    """``spec`` itself if its family has an explicit layer list; else a located :class:`SpecError`
    at ``model:`` naming the verbs that do work on it."""
    if family_of(spec).has_layer_list:
        return spec
    message = f"`flowspec {verb}` works on a flow's layer list; this is a model: {spec.model} spec"
    hint = "validate, check, render, report, train, eval and sample work on it"
    source = spec.source
    raise SpecError(source.problem(message, ("model",), hint) if source else Problem(message, ("model",), hint=hint))
