"""The command line's sampling conditions: ``--class``, ``--per-class`` and ``--context`` parsed
into the condition tensor a model's ``sample(n, condition=...)`` takes (the library never reads
these flags)."""

from __future__ import annotations

import math

import torch

from flowspec.errors import FlowSpecError
from flowspec.train.conditions import class_grid


def requested_conditions(model, n: int, label: int | None = None, per_class: int | None = None,
                         context: str | None = None, limit: int | None = None):
    """``(conditions or None, n, grid columns or None)`` for a sampling request: ``label`` for every
    sample, ``per_class`` samples of each class (one grid row per class), or one ``context`` vector
    ('0.5,-1'); a class-conditional model asked for nothing draws the classes in turn."""
    condition = getattr(model.spec, "condition", None)
    asked = [name for name, value in (("--class", label), ("--per-class", per_class), ("--context", context))
             if value is not None]
    if condition is None:
        if asked:
            raise FlowSpecError(f"{asked[0]}: this model is unconditional (its spec has no condition:)")
        return None, n, None
    if len(asked) > 1 and "--context" in asked:
        raise FlowSpecError(f"give one of {', '.join(asked)}")
    if condition.labelled:
        if context is not None:
            raise FlowSpecError(f"--context: this model is class-conditional (condition.classes: {condition.classes}); "
                                f"use --class or --per-class")
        if label is not None and label >= condition.classes:
            raise FlowSpecError(f"--class {label} is outside 0..{condition.classes - 1} "
                                f"(condition.classes: {condition.classes})")
        if per_class is not None and label is None and limit is not None and per_class * condition.classes > limit:
            raise FlowSpecError(f"--per-class {per_class} x {condition.classes:,} classes is "
                                f"{per_class * condition.classes:,} samples; at most {limit:,} in one run")
        if per_class is not None:
            labels = class_grid(condition.classes, per_class)
            if label is not None:
                labels = torch.full((per_class,), label)
            return labels, len(labels), per_class
        if label is not None:
            return torch.full((n,), label), n, None
        return torch.arange(n) % condition.classes, n, None
    if label is not None or per_class is not None:
        raise FlowSpecError(f"{asked[0]}: this model is context-conditional (condition.dim: {condition.dim}); "
                            f"use --context")
    if context is None:
        raise FlowSpecError(f"this model is context-conditional (condition.dim: {condition.dim}); pass "
                            f"--context with {condition.dim} comma-separated numbers")
    try:
        values = [float(v) for v in context.split(",")]
    except ValueError:
        raise FlowSpecError(f"--context {context!r}: expected {condition.dim} comma-separated numbers") from None
    if len(values) != condition.dim or not all(math.isfinite(v) for v in values):
        raise FlowSpecError(f"--context {context!r}: expected {condition.dim} finite comma-separated numbers "
                            f"(condition.dim: {condition.dim})")
    return torch.tensor(values).expand(n, -1), n, None
