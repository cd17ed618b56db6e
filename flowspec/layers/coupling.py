"""Coupling layers: NICE's additive (arXiv:1410.8516) and RealNVP / Glow's affine
(arXiv:1605.08803, arXiv:1807.03039).

With ``x`` split by a mask into a transformed part ``x_a`` and a conditioning part ``x_b``:

forward:  ``(log s, t) = NN(x_b)``;  ``y_a = s * x_a + t``,  ``y_b = x_b``
inverse:  ``x_a = (y_a - t) / s``,  ``x_b = y_b``
log-det:  ``sum(log s)`` over the transformed entries (0 for additive, where ``s = 1``)

Scale: ``sigmoid`` is Glow's ``s = sigmoid(h + 2)``; ``exp`` is ``s = exp(c * tanh(h / c))``,
a soft clamp to ``[exp(-c), exp(c)]``. Masks: ``channel`` splits the channels (features) in
halves, ``checkerboard`` alternates pixels; ``parity`` chooses which half is transformed.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from flowspec.errors import RuleViolation
from flowspec.layers.base import FlowLayer, LayerConfig, LayerCost, Shape, numel, register
from flowspec.layers.conditioners import Conditioner, ConvConditioner, MLPConditioner

SIGMOID_SHIFT = 2.0


@register
class CouplingConfig(LayerConfig):
    kind: Literal["coupling"] = "coupling"
    transform: Literal["additive", "affine"] = "affine"
    mask: Literal["channel", "checkerboard"] = "channel"
    parity: Literal[0, 1] = 0
    scale: Literal["sigmoid", "exp"] = "sigmoid"
    clamp: float = Field(2.0, description="soft clamp c of the exp scale: log s in [-c, c]")
    conditioner: Conditioner = Field(default_factory=ConvConditioner)

    @field_validator("clamp")
    @classmethod
    def _scale_bounded_away_from_zero(cls, clamp: float) -> float:
        if not 0 < clamp < 50:
            raise ValueError("clamp must be in (0, 50) so that the exp scale can neither "
                             "reach 0 nor overflow")
        return clamp

    def _halves(self, shape: Shape) -> tuple[int, int]:
        """(transformed, conditioning) channel counts of a channel mask."""
        first = shape[0] // 2
        second = shape[0] - first
        return (first, second) if self.parity == 0 else (second, first)

    def output_shape(self, shape: Shape) -> Shape:
        image = len(shape) == 3
        if self.mask == "checkerboard" and not image:
            raise RuleViolation("a checkerboard mask needs an image input (C, H, W), got a vector "
                                f"{shape}", hint="use mask: channel", field=("mask",))
        if self.mask == "checkerboard" and shape[1] * shape[2] < 2:
            raise RuleViolation("a checkerboard mask needs at least 2 pixels",
                                hint="use mask: channel", field=("mask",))
        if self.mask == "channel" and shape[0] < 2:
            what = "channels" if image else "features"
            raise RuleViolation(f"a channel mask needs at least 2 {what} to divide, got {shape[0]}",
                                hint="squeeze first or use mask: checkerboard" if image else None,
                                field=("mask",))
        if image and isinstance(self.conditioner, MLPConditioner):
            raise RuleViolation("an mlp conditioner works on vectors; this input is an image "
                                f"{shape}", hint="use conditioner: {kind: conv}",
                                field=("conditioner", "kind"))
        if not image and isinstance(self.conditioner, ConvConditioner):
            raise RuleViolation(f"a conv conditioner needs an image input; this input is a vector "
                                f"{shape}", hint="use conditioner: {kind: mlp}",
                                field=("conditioner", "kind"))
        return shape

    def _net_channels(self, shape: Shape) -> tuple[int, int]:
        factor = 2 if self.transform == "affine" else 1
        if self.mask == "checkerboard":
            return shape[0], factor * shape[0]
        transformed, conditioning = self._halves(shape)
        return conditioning, factor * transformed

    def cost(self, shape: Shape) -> LayerCost:
        n_in, n_out = self._net_channels(shape)
        net = self.conditioner.cost(n_in, n_out, numel(shape[1:]))
        n = numel(shape)
        elementwise = 4.0 * n
        return LayerCost(params=net.params, flops_forward=net.matmul_flops + elementwise,
                         flops_inverse=net.matmul_flops + elementwise, matmul_flops_forward=net.matmul_flops,
                         matmul_flops_inverse=net.matmul_flops,
                         flops_logdet=float(n) if self.transform == "affine" else 0.0,
                         activations=n + net.outputs,  # input, ReLU outputs, net output
                         # net: a conv / linear per layer and a ReLU between; masking, scale,
                         # affine map, join and log-det sum around it
                         ops=2 * net.layers - 1 + (14 if self.mask == "checkerboard" else 11))

    def build(self, shape: Shape) -> "Coupling":
        n_in, n_out = self._net_channels(shape)
        return Coupling(self, shape, self.conditioner.build(n_in, n_out))


def checkerboard(height: int, width: int, parity: int) -> Tensor:
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    return ((rows + cols + parity) % 2).float().view(1, 1, height, width)


class Coupling(FlowLayer):
    def __init__(self, config: CouplingConfig, shape: Shape, net: torch.nn.Module):
        super().__init__()
        self.affine = config.transform == "affine"
        self.scale = config.scale
        self.clamp = config.clamp
        self.net = net
        self.parity = config.parity
        self.transformed, _ = config._halves(shape)
        self.checkerboard = config.mask == "checkerboard"
        if self.checkerboard:
            # 1 where the entry conditions, 0 where it is transformed
            self.register_buffer("mask", checkerboard(shape[1], shape[2], config.parity))

    def _log_scale(self, raw: Tensor) -> Tensor:
        if self.scale == "sigmoid":
            return F.logsigmoid(raw + SIGMOID_SHIFT)
        return self.clamp * torch.tanh(raw / self.clamp)

    def _params(self, condition: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(condition)
        if not self.affine:
            return h, None
        shift, raw = h.chunk(2, dim=1)
        return shift, self._log_scale(raw)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.parity == 0:
            return x[:, : self.transformed], x[:, self.transformed:]
        conditioning = x.shape[1] - self.transformed
        return x[:, conditioning:], x[:, :conditioning]

    def _join(self, transformed: Tensor, conditioning: Tensor) -> Tensor:
        parts = (transformed, conditioning) if self.parity == 0 else (conditioning, transformed)
        return torch.cat(parts, dim=1)

    @staticmethod
    def _sum(log_s: Tensor) -> Tensor:
        return log_s.flatten(1).sum(1)

    def _run(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if self.checkerboard:
            shift, log_s = self._params(x * self.mask)
            free = 1 - self.mask
            shift = shift * free
            if log_s is None:
                y = x - shift if inverse else x + shift
                return y, x.new_zeros(x.shape[0])
            log_s = log_s * free
            y = (x - shift) * torch.exp(-log_s) if inverse else x * torch.exp(log_s) + shift
            logdet = self._sum(log_s)
            return y, -logdet if inverse else logdet
        x_a, x_b = self._split(x)
        shift, log_s = self._params(x_b)
        if log_s is None:
            y_a = x_a - shift if inverse else x_a + shift
            return self._join(y_a, x_b), x.new_zeros(x.shape[0])
        if inverse:
            y_a = (x_a - shift) * torch.exp(-log_s)
        else:
            y_a = x_a * torch.exp(log_s) + shift
        logdet = self._sum(log_s)
        return self._join(y_a, x_b), -logdet if inverse else logdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._run(y, inverse=True)
