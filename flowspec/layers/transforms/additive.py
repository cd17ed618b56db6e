"""``additive`` (NICE, Dinh et al. 2014, arXiv:1410.8516): ``y = x + t``, ``x = y - t``, log-det 0.
One parameter per entry, ``t``."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from flowspec.layers.transforms.base import ElementwiseTransform, TransformConfig, TransformCost, register_transform


@register_transform
class AdditiveTransform(TransformConfig):
    kind: Literal["additive"] = "additive"

    @property
    def params_per_entry(self) -> int:
        return 1

    def build(self) -> "Additive":
        return Additive()

    def cost(self) -> TransformCost:
        # the elementwise share of a coupling (masking, shift, join), as the affine rule counts it
        return TransformCost(flops_forward=4.0, flops_inverse=4.0, flops_logdet=0.0, ops=0)


class Additive(ElementwiseTransform):
    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, None]:
        return x + params[:, 0], None

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, None]:
        return y - params[:, 0], None
