"""Layer kinds, one file each. Importing this package imports every module in it, so every kind
registers itself in :data:`LAYER_KINDS` (transforms and conditioners likewise in their packages)."""

from flowspec.layers.base import LAYER_KINDS, FlowLayer, LayerConfig, LayerCost, Shape, register
from flowspec.layers.kinds import import_all

import_all(__name__, __path__)

__all__ = ["LAYER_KINDS", "FlowLayer", "LayerConfig", "LayerCost", "Shape", "register"]
