"""Layer kinds. Importing this package registers every kind in :data:`LAYER_KINDS`."""

from flowspec.layers import actnorm, coupling, invconv, permute, scaling, split, squeeze  # noqa: F401
from flowspec.layers.base import LAYER_KINDS, FlowLayer, LayerConfig, LayerCost, Shape, register

__all__ = ["LAYER_KINDS", "FlowLayer", "LayerConfig", "LayerCost", "Shape", "register"]
