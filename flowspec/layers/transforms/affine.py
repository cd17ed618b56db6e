"""``affine`` (RealNVP, Dinh et al. 2017, arXiv:1605.08803; Glow, arXiv:1807.03039):

forward:  ``y = s x + t``;  inverse: ``x = (y - t) / s``;  log-det ``log s`` per entry.

Two parameters per entry, ``(t, h)``. ``scale: sigmoid`` is Glow's ``s = sigmoid(h + 2)``: zero
parameters give ``s = sigmoid(2) ~= 0.8808``, so a fresh Glow coupling shrinks its input slightly
rather than being the identity. ``scale: exp`` is ``s = exp(c tanh(h / c))``, a soft clamp of
``log s`` to ``[-c, c]``; zero parameters give the identity.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from flowspec.layers.transforms.base import ElementwiseTransform, TransformConfig, TransformCost, register_transform

SIGMOID_SHIFT = 2.0


def check_clamp(clamp: float) -> float:
    if not 0 < clamp < 50:
        raise ValueError("clamp must be in (0, 50) so that the exp scale can neither reach 0 nor overflow")
    return clamp


@register_transform
class AffineTransform(TransformConfig):
    kind: Literal["affine"] = "affine"
    scale: Literal["sigmoid", "exp"] = "sigmoid"
    clamp: float = Field(2.0, description="soft clamp c of the exp scale: log s in [-c, c]",
                         json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 50})

    @field_validator("clamp")
    @classmethod
    def _scale_bounded_away_from_zero(cls, clamp: float) -> float:
        return check_clamp(clamp)

    @property
    def params_per_entry(self) -> int:
        return 2

    def build(self) -> "Affine":
        return Affine(self.scale, self.clamp)

    def cost(self) -> TransformCost:
        return TransformCost(flops_forward=4.0, flops_inverse=4.0, flops_logdet=1.0, ops=0)


class Affine(ElementwiseTransform):
    def __init__(self, scale: str, clamp: float):
        super().__init__()
        self.scale, self.clamp = scale, clamp

    def log_scale(self, raw: Tensor) -> Tensor:
        if self.scale == "sigmoid":
            return F.logsigmoid(raw + SIGMOID_SHIFT)
        return self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_s = self.log_scale(params[:, 1])
        return x * torch.exp(log_s) + params[:, 0], log_s

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_s = self.log_scale(params[:, 1])
        return (y - params[:, 0]) * torch.exp(-log_s), -log_s
