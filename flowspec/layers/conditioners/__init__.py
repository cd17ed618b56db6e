"""Conditioner kinds of coupling layers, one file each; importing this package registers them all
(:data:`CONDITIONER_KINDS`) and builds the spec's :data:`Conditioner` union."""

from flowspec.layers.conditioners.base import (CONDITIONER_KINDS, ChannelsLastNet, ConditionerConfig, ContextNet,
                                               NetCost, context_channels, register_conditioner, stack_cost,
                                               with_context, zero_init)
from flowspec.layers.kinds import import_all, kind_union

import_all(__name__, __path__)

from flowspec.layers.conditioners.conv import ConvConditioner  # noqa: E402
from flowspec.layers.conditioners.mlp import MLPConditioner  # noqa: E402

Conditioner = kind_union(CONDITIONER_KINDS, "conditioner")

__all__ = ["CONDITIONER_KINDS", "ChannelsLastNet", "Conditioner", "ConditionerConfig", "ContextNet", "ConvConditioner",
           "MLPConditioner", "NetCost", "context_channels", "register_conditioner", "stack_cost", "with_context",
           "zero_init"]
