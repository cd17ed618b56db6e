"""``affine`` (RealNVP, Dinh et al. 2017, arXiv:1605.08803; Glow, arXiv:1807.03039):

``order: scale_shift``:  forward ``y = s x + t``;  inverse ``x = (y - t) / s``
``order: shift_scale``:  forward ``y = (x + t) s``;  inverse ``x = y / s - t``  (the order of Glow's
model.py and RealNVP's real_nvp_multiscale_dataset.py)
log-det: ``log s`` per entry, either order.

Two parameters per entry, ``(t, h)``. ``scale: sigmoid`` is Glow's ``s = sigmoid(h + 2)``: zero
parameters give ``s = sigmoid(2) ~= 0.8808``, so a fresh Glow coupling shrinks its input slightly
rather than being the identity. ``scale: sigmoid2`` is Jet's ``s = 2 sigmoid(h)`` (Kolesnikov et al.
2024, arXiv:2412.15129): ``s`` in (0, 2), the identity at zero parameters. ``scale: exp`` is ``s = exp(c tanh(h / c))``, a soft clamp of
``log s`` to ``[-c, c]``; zero parameters give the identity. ``scale: tanh`` is RealNVP's
``log s = a tanh(h)`` with one learned scalar ``a`` per transform, initialised at 0, so a fresh
coupling is the identity whatever its conditioner computes.

``shift_gain`` ``k`` (1 by default) reads the shift as ``t = k h_t`` from its raw parameter ``h_t``: the
same maps, learned at another pace. In ``scale_shift`` order a conditional mean ``mu`` needs
``t = -mu s``, which grows with the scale, while an optimiser such as Adam moves every weight of the
conditioner's last layer by about its learning rate per step, whatever the head; ``maf`` sets
``k = 3`` (see :mod:`flowspec.layers.maf`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from flowspec.layers.transforms.base import ElementwiseTransform, TransformConfig, TransformCost, register_transform

SIGMOID_SHIFT = 2.0
LOG_2 = math.log(2.0)


def check_clamp(clamp: float) -> float:
    if not 0 < clamp < 50:
        raise ValueError("clamp must be in (0, 50) so that the exp scale can neither reach 0 nor overflow")
    return clamp


@register_transform
class AffineTransform(TransformConfig):
    kind: Literal["affine"] = "affine"
    scale: Literal["sigmoid", "sigmoid2", "exp", "tanh"] = Field(
        "sigmoid", description="s = sigmoid(h + 2) (Glow); 2 sigmoid(h) (Jet); exp(c tanh(h / c)) (soft clamp); "
                               "exp(a tanh(h)) with a learned scalar a initialised at 0 (RealNVP)")
    order: Literal["scale_shift", "shift_scale"] = Field(
        "scale_shift", description="y = s x + t, or y = (x + t) s (Glow's and RealNVP's code)")
    clamp: float = Field(2.0, description="soft clamp c of the exp scale: log s in [-c, c]",
                         json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 50})
    shift_gain: float = Field(1.0, gt=0, le=100, description="k: the shift is t = k h_t from its raw parameter h_t "
                                                            "(the same maps, learned at another pace)")

    @field_validator("clamp")
    @classmethod
    def _scale_bounded_away_from_zero(cls, clamp: float) -> float:
        return check_clamp(clamp)

    @property
    def params_per_entry(self) -> int:
        return 2

    def build(self) -> "Affine":
        return Affine(self.scale, self.clamp, self.order, self.shift_gain)

    def cost(self) -> TransformCost:
        gain = 0.0 if self.shift_gain == 1 else 1.0  # t = k h_t: one multiply per entry (inside the add)
        return TransformCost(flops_forward=4.0 + gain, flops_inverse=4.0 + gain, flops_logdet=1.0, ops=0,
                             params=1 if self.scale == "tanh" else 0)


class Affine(ElementwiseTransform):
    def __init__(self, scale: str, clamp: float, order: str = "scale_shift", shift_gain: float = 1.0):
        super().__init__()
        self.scale, self.clamp, self.shift_first = scale, clamp, order == "shift_scale"
        self.shift_gain = float(shift_gain)
        if scale == "tanh":
            self.tanh_scale = nn.Parameter(torch.zeros(()))

    def log_scale(self, raw: Tensor) -> Tensor:
        if self.scale == "sigmoid":
            return F.logsigmoid(raw + SIGMOID_SHIFT)
        if self.scale == "sigmoid2":
            return F.logsigmoid(raw) + LOG_2
        if self.scale == "tanh":
            return self.tanh_scale * torch.tanh(raw)
        return self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        raw_t, raw_s = params.unbind(1)  # one view op (and one stack in backward), not two selects
        log_s = self.log_scale(raw_s)  # t = k raw_t, inside the add
        if self.shift_first:
            return torch.add(x, raw_t, alpha=self.shift_gain) * torch.exp(log_s), log_s
        return torch.add(x * torch.exp(log_s), raw_t, alpha=self.shift_gain), log_s

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        raw_t, raw_s = params.unbind(1)
        log_s = self.log_scale(raw_s)
        if self.shift_first:
            return torch.sub(y * torch.exp(-log_s), raw_t, alpha=self.shift_gain), -log_s
        return torch.sub(y, raw_t, alpha=self.shift_gain) * torch.exp(-log_s), -log_s
