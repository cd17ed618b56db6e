"""Spec models of ``condition:`` (re-exported): the registered condition kinds of
:mod:`flowspec.conditions`, one file each (``label.py``: ``{kind: class}``, ``vector.py``:
``{kind: vector}``)."""

from flowspec.conditions import ClassCondition, Condition, ConditionConfig, VectorCondition  # noqa: F401
