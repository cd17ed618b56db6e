"""Condition kinds (``condition:``), one file each; importing this package registers them all
(:data:`CONDITION_KINDS`) and builds the spec's :data:`Condition` union."""

from flowspec.conditions.base import CONDITION_KINDS, ConditionConfig, ConditionEmbedding, register_condition
from flowspec.layers.kinds import import_all, kind_union

import_all(__name__, __path__)

from flowspec.conditions.label import ClassCondition  # noqa: E402
from flowspec.conditions.vector import VectorCondition  # noqa: E402

Condition = kind_union(CONDITION_KINDS, "condition", shorthand=False)

__all__ = ["CONDITION_KINDS", "ClassCondition", "Condition", "ConditionConfig", "ConditionEmbedding",
           "VectorCondition", "register_condition"]
