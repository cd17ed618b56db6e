"""An example third-party package adding a coupling transform to flowspec (see docs/plugins.md).

``softplus`` is an affine map whose scale is a softplus, positive without an exponential:

forward:  ``y = s x + t``, ``s = softplus(h) + m``;  inverse: ``x = (y - t) / s``;
log-det ``log s`` per entry. Zero parameters give ``s = log 2 + m``.

Its package metadata declares the entry point (``pyproject.toml``)::

    [project.entry-points."flowspec.kinds"]
    softplus = "flowspec_softplus:register"

and flowspec calls :func:`register` the first time it looks a kind up or validates a spec.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from flowspec.layers.transforms import ElementwiseTransform, TransformConfig, TransformCost, register_transform


class SoftplusTransform(TransformConfig):
    """``y = (softplus(h) + min_scale) x + t``: two parameters per entry, ``(t, h)``."""

    kind: Literal["softplus"] = "softplus"
    min_scale: float = Field(1e-3, gt=0, le=1, description="floor m of the scale s = softplus(h) + m")

    @property
    def params_per_entry(self) -> int:
        return 2

    def build(self) -> "Softplus":
        return Softplus(self.min_scale)

    def cost(self) -> TransformCost:
        """softplus (about 4 FLOPs: exp, log1p, add, floor), a multiply and an add; ``log s``."""
        return TransformCost(flops_forward=6.0, flops_inverse=6.0, flops_logdet=1.0, ops=4)


class Softplus(ElementwiseTransform):
    def __init__(self, min_scale: float):
        super().__init__()
        self.min_scale = min_scale

    def scale(self, raw: Tensor) -> Tensor:
        return F.softplus(raw) + self.min_scale

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scale(params[:, 1])
        return x * s + params[:, 0], s.log()

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scale(params[:, 1])
        return (y - params[:, 0]) / s, -s.log()


#: the kinds this package adds, by registry
KINDS = {"transform": [SoftplusTransform]}


def register() -> None:
    """The ``flowspec.kinds`` entry point: make this package's kinds known to flowspec."""
    register_transform(SoftplusTransform)
