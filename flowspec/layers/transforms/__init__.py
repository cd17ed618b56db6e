"""Elementwise transforms of coupling layers, one file each; importing this package registers them
all (:data:`TRANSFORM_KINDS`) and builds the spec's :data:`Transform` union."""

from flowspec.layers.kinds import import_all, kind_union
from flowspec.layers.transforms.base import (TRANSFORM_KINDS, ElementwiseTransform, TransformConfig, TransformCost,
                                             register_transform)

import_all(__name__, __path__)

from flowspec.layers.transforms.additive import AdditiveTransform  # noqa: E402
from flowspec.layers.transforms.affine import AffineTransform  # noqa: E402

Transform = kind_union(TRANSFORM_KINDS, "transform")

__all__ = ["TRANSFORM_KINDS", "AdditiveTransform", "AffineTransform", "ElementwiseTransform", "Transform",
           "TransformConfig", "TransformCost", "register_transform"]
