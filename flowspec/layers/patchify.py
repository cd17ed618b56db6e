r"""Patchify: an image ``(C, H, W)`` as a sequence of ``N = HW / p^2`` patch tokens of ``D = p^2 C``
channels (ViT, Dosovitskiy et al. 2020, arXiv:2010.11929; TarFlow, Zhai et al. 2024, arXiv:2412.06329).

forward: ``y[n, c p^2 + i p + j] = x[c, a p + i, b p + j]`` with token ``n = a (W / p) + b`` (tokens in
raster order over the patch grid, a token's channels ordered channel, row, column: torch's
``unfold``); inverse: the reverse reshuffle; ``logdet = 0`` (a permutation of the entries).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveInt
from torch import Tensor

from flowspec.errors import RuleViolation
from flowspec.layers.base import ContextShape, FlowLayer, LayerConfig, LayerCost, Shape, register, zeros_like_batch


@register
class PatchifyConfig(LayerConfig):
    kind: Literal["patchify"] = "patchify"
    accepts: ClassVar[str] = "image"
    patch: PositiveInt = Field(2, description="side p of the square patches; p must divide the height and width")

    @property
    def spatial_factor(self) -> int:  # type: ignore[override]  (the smallest image check builds: p x p)
        return self.patch

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        p = self.patch
        if h % p or w % p:
            raise RuleViolation(f"patch {p} does not divide the {h}x{w} image",
                                hint=f"use a patch that divides {h} and {w}", field=("patch",))
        return ((h // p) * (w // p), p * p * c)

    def entry_map(self, shape: Shape, marks: np.ndarray) -> tuple[np.ndarray, None]:
        """The forward's reshuffle of the entries."""
        c, h, w = shape
        p = self.patch
        tokens = marks.reshape(c, h // p, p, w // p, p).transpose(1, 3, 0, 2, 4)
        return tokens.reshape((h // p) * (w // p), c * p * p), None

    def cost(self, shape: Shape, context: ContextShape = None) -> LayerCost:
        return LayerCost(activations=0, ops=4)  # reshape, permute, copy, zeros

    def build(self, shape: Shape, context: ContextShape = None) -> "Patchify":
        return Patchify(self.patch, shape)


class Patchify(FlowLayer):
    """``(B, C, H, W) <-> (B, HW / p^2, p^2 C)``, exactly (a reshuffle)."""

    def __init__(self, patch: int, shape: Shape):
        super().__init__()
        self.patch, self.shape = patch, tuple(shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        p = self.patch
        y = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return y.reshape(b, (h // p) * (w // p), c * p * p), zeros_like_batch(x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        c, h, w = self.shape
        p = self.patch
        x = y.reshape(y.shape[0], h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(y.shape[0], c, h, w), zeros_like_batch(y)
