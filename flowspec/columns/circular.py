r"""``circular``: an angle, a value on a circle of period ``hi - lo`` (``bounds``, default
``[-pi, pi]``), reshaped by a learned circular rational-quadratic spline (Rezende et al. 2020,
"Normalizing Flows on Tori and Spheres", arXiv:2002.02428; Durkan et al. 2019, arXiv:1906.04032)
and cut open onto the real line by a logit.

With ``theta = 2 pi (x - lo) / (hi - lo) - pi`` the angle in ``[-pi, pi)``:

rotate:   ``theta' = ((theta + pi + phi) mod 2 pi) - pi``, a learned rotation ``phi`` (log-det 0);
spline:   ``s = S(theta')``, a monotonic rational-quadratic spline of ``[-pi, pi]`` onto itself
          whose end derivatives are one learned number, ``d_0 = d_K``: with the rotation, ``S``
          is a diffeomorphism of the circle (Rezende et al. 2020, sec. 3.2);
cut:      ``p = (s + pi) / (2 pi)``, ``y = log p - log(1 - p)``;
log-det:  ``-log(hi - lo) + log S'(theta') - log p - log(1 - p)``;
inverse:  ``p = sigmoid(y)``, ``theta' = S^{-1}(2 pi p - pi)``, ``theta = ((theta' + pi - phi) mod 2 pi) - pi``.

Every step is a bijection of the circle minus one point (the cut) onto its image, so
``p(x) = p_Y(y) |dy/dx|`` integrates to 1 over the circle. The flow sees one real number per angle;
the learned rotation moves the cut to where the data are sparse. ``3K + 1`` learned numbers per
column (``K`` widths, ``K`` heights, ``K`` knot derivatives, the rotation), all zero at the start:
equal bins, unit derivatives, no rotation. Values at ``hi`` are the angle ``lo``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from flowspec.columns._logit import logit_of_unit, sigmoid_of_real
from flowspec.columns.base import ColumnConfig, ColumnTransform, Interval, register_column
from flowspec.core.costs import LayerCost
from flowspec.layers.transforms.spline import RationalQuadraticSpline, SplineTransform


@register_column
class CircularColumn(ColumnConfig):
    kind: Literal["circular"] = "circular"
    bounds: Interval = Field([-math.pi, math.pi], description="[lo, hi]: one turn of the circle "
                                                                          "(default [-pi, pi]; [0, 360] for degrees)")
    bins: Annotated[int, Field(ge=2, le=64)] = Field(8, description="K, the spline's bins")

    def valid(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self.bounds
        return (values >= lo) & (values <= hi)

    def problem(self, value: float) -> str:
        lo, hi = self.bounds
        return f"{value:g} is outside one turn [{lo:g}, {hi:g}] of a circular column"

    def parameters(self, n: int) -> int:
        return n * (3 * self.bins + 1)

    def cost(self, n: int) -> LayerCost:
        """The spline's per-entry cost (:class:`SplineTransform`'s rule at these bins) plus the angle's
        scaling, the rotation's add and modulo, and the logit cut (~20)."""
        spline = SplineTransform(bins=self.bins).cost()
        base = super().cost(n)
        return LayerCost(params=base.params, flops_forward=(spline.flops_forward + spline.flops_logdet + 20) * n,
                         flops_inverse=(spline.flops_inverse + spline.flops_logdet + 20) * n,
                         activations=int((spline.saved + 4) * n), ops=spline.ops + 10)

    def build(self, n: int) -> "CircularSpline":
        return CircularSpline(n, self.bins, *self.bounds)


class _PeriodicKnots(RationalQuadraticSpline):
    """The spline on ``[-pi, pi]`` with ``3K`` parameters: the ``K`` knot derivatives ``d_0 ..
    d_{K-1}`` and ``d_K = d_0`` (the slopes agree where the circle closes)."""

    def _bins(self, params: Tensor):
        k = self.bins
        raw = params.movedim(1, -1).contiguous()
        xs = self._knots(raw[..., :k], self.min_width)
        ys = self._knots(raw[..., k:2 * k], self.min_height)
        inner = self.min_derivative + torch.nn.functional.softplus(raw[..., 2 * k:] + self.derivative_shift)
        return xs, ys, torch.cat([inner, inner[..., :1]], dim=-1)


class CircularSpline(ColumnTransform):
    def __init__(self, n: int, bins: int, lo: float, hi: float):
        super().__init__()
        self.lo, self.period = lo, hi - lo
        self.spline = _PeriodicKnots(bins, math.pi, 1e-3, 1e-3, 1e-3)
        self.knots = nn.Parameter(torch.zeros(3 * bins, n))
        self.rotation = nn.Parameter(torch.zeros(n))

    def _params(self, like: Tensor) -> Tensor:
        return self.knots.to(like.dtype).unsqueeze(0).expand(like.shape[0], -1, -1)

    @staticmethod
    def _wrap(theta: Tensor) -> Tensor:
        return torch.remainder(theta + math.pi, 2 * math.pi) - math.pi

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        theta = 2 * math.pi * (v - self.lo) / self.period - math.pi
        s, spline_logdet = self.spline(self._wrap(theta + self.rotation), self._params(v))
        y, cut_logdet = logit_of_unit((s + math.pi) / (2 * math.pi))
        return y, spline_logdet + cut_logdet - math.log(self.period)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        p, cut_logdet = sigmoid_of_real(y)
        rotated, spline_logdet = self.spline.inverse(2 * math.pi * p - math.pi, self._params(y))
        theta = self._wrap(rotated - self.rotation)
        return self.lo + (theta + math.pi) * self.period / (2 * math.pi), \
            spline_logdet + cut_logdet + math.log(self.period)
