"""What a spec asks of its data, and the conditions that go with each example.

A spec with ``input.data: continuous`` reads any finite values (``levels`` None); a spec with
``condition: {kind: class, classes: N}`` needs a label ``0 .. N-1`` per example, one with
``condition: {kind: vector, dim: D}`` a context vector of width ``D``. The loaders check both and
name the data file and the spec field when they do not hold (:func:`flowspec.data.check_condition`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from flowspec.errors import DataError


def data_levels(spec) -> int | None:
    """The spec's levels, or None for continuous data (what :func:`flowspec.data.load_data` takes)."""
    return None if getattr(spec.input, "continuous", False) else spec.input.levels


def condition_requirements(spec) -> dict:
    """``classes=`` / ``context_dim=`` for :func:`flowspec.data.load_data`."""
    condition = getattr(spec, "condition", None)
    if condition is None:
        return {}
    return condition.data_requirements()


def spec_data_set(spec) -> str:
    """The data set ``spec`` names (``training.data``), else digits."""
    from flowspec.spec.training import DEFAULT_DATA

    training = getattr(spec, "training", None)
    return training.data_set if training is not None else DEFAULT_DATA


def load_spec_data(spec, kind: str, data_dir: str | Path | None, standardize: bool = False, **columns):
    """:func:`flowspec.data.load_data` for ``spec``: its shape, its levels (None when continuous)
    and the labels or contexts its condition needs."""
    from flowspec.data import load_data

    options = {**condition_requirements(spec), **columns, **({"standardize": True} if standardize else {}),
               **({"bits": spec.input.bits} if getattr(spec.input, "bits", None) else {}),  # input.bits: 8-bit data reduced
               **({"columns": spec.input.columns} if getattr(spec.input, "columns", None) else {})}
    return load_data(kind, data_dir, tuple(spec.input.shape), data_levels(spec), **options)


def split_conditions(spec, data) -> tuple[Tensor | None, Tensor | None]:
    """The conditions of the train and test examples, row by row (None for an unconditional spec)."""
    condition = getattr(spec, "condition", None)
    if condition is None:
        return None, None
    if condition.labelled:
        parts = data.labels_train, data.labels_test
        field = "condition.classes"
    else:
        parts = data.context_train, data.context_test
        field = "condition.dim"
    if parts[0] is None or parts[1] is None:
        what = "labels" if condition.labelled else "contexts"
        raise DataError(f"{getattr(data, 'name', 'the data')}: has no {what}, but the spec is conditional ({field})")
    return parts


def class_grid(classes: int, per_class: int) -> Tensor:
    """Labels ``0 0 .. 1 1 .. N-1``: ``per_class`` of each, one row of a grid per class."""
    return torch.arange(classes).repeat_interleave(per_class)


def default_sample_conditions(spec, n: int, test_conditions: Tensor | None = None) -> Tensor | None:
    """Conditions for ``n`` samples when none are asked for: labels ``0 .. N-1`` in turn for a class
    condition; the first ``n`` test contexts (cycled) for a vector condition; None unconditionally."""
    condition = getattr(spec, "condition", None)
    if condition is None:
        return None
    if condition.labelled:
        return torch.arange(n) % condition.classes
    if test_conditions is None or len(test_conditions) == 0:
        raise DataError(f"a context-conditional model (condition.dim: {condition.dim}) needs contexts to sample; "
                        f"pass --context")
    return test_conditions[torch.arange(n) % len(test_conditions)]
