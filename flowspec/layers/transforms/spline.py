r"""``spline``: monotonic rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows",
arXiv:1906.04032, sec. 3.1), identity outside ``[-B, B]``.

``K`` bins with widths ``w_k`` and heights ``h_k`` (each summing to ``2B``) give knots
``(x_k, y_k)`` from ``(-B, -B)`` to ``(B, B)``; ``d_k > 0`` are the derivatives at the knots, with
``d_0 = d_K = 1`` so that the spline joins the identity outside the bound. In bin ``k``, with
``s = h_k / w_k`` and ``xi = (x - x_k) / w_k`` in ``[0, 1]``:

forward:  ``y = y_k + h_k (s xi^2 + d_k xi (1 - xi)) / (s + (d_{k+1} + d_k - 2 s) xi (1 - xi))``
log-det:  ``log(s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2) / (s + (d_{k+1} + d_k - 2 s) xi (1 - xi))^2)``
inverse:  ``xi = 2c / (-b - sqrt(b^2 - 4ac))`` with ``dy = y - y_k``, ``delta = d_{k+1} + d_k - 2s``,
          ``a = h_k (s - d_k) + dy delta``, ``b = h_k d_k - dy delta``, ``c = -s dy``: the root of
          the quadratic in ``[0, 1]`` in the form that does not cancel (``b > 0`` there, so the
          denominator is ``<= -2b < 0``); the discriminant is clamped at 0 against round-off.

``3K - 1`` parameters per entry: ``K`` unnormalised widths, ``K`` heights, ``K - 1`` interior
derivatives. ``w = 2B (m_w + (1 - K m_w) softmax(raw))`` (heights alike) keeps every bin at least
``2B m_w`` wide; ``d = m_d + softplus(raw + c0)`` with ``c0`` chosen so that ``raw = 0`` gives
``d = 1``: all-zero parameters (a zero-initialised conditioner) give the identity.
Outside ``[-B, B]``: ``y = x``, log-det 0 (the arithmetic runs on the input clamped to the bound,
so no NaN or infinity reaches the result or its gradient, even at ``|x| = 1e6``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from flowspec.layers.transforms.base import ElementwiseTransform, TransformConfig, TransformCost, register_transform


@register_transform
class SplineTransform(TransformConfig):
    kind: Literal["spline"] = "spline"
    bins: int = Field(8, description="K, the number of bins (at least 2)", json_schema_extra={"minimum": 2})
    bound: float = Field(3.0, description="B: the spline maps [-B, B] onto itself; identity outside",
                         json_schema_extra={"exclusiveMinimum": 0})
    min_width: float = Field(1e-3, description="least bin width, as a fraction of 2B",
                             json_schema_extra={"exclusiveMinimum": 0})
    min_height: float = Field(1e-3, description="least bin height, as a fraction of 2B",
                              json_schema_extra={"exclusiveMinimum": 0})
    min_derivative: float = Field(1e-3, description="least derivative at a knot (below 1)",
                                  json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 1})

    @field_validator("bins")
    @classmethod
    def _at_least_two(cls, bins: int) -> int:
        if bins < 2:
            raise ValueError(f"bins must be at least 2 (a spline of one bin is affine), got {bins}")
        return bins

    @field_validator("bound")
    @classmethod
    def _positive(cls, bound: float) -> float:
        if not bound > 0:
            raise ValueError(f"bound must be > 0 (the spline acts on [-bound, bound]), got {bound}")
        return bound

    @field_validator("min_derivative")
    @classmethod
    def _below_one(cls, value: float) -> float:
        if not 0 < value < 1:
            raise ValueError(f"min_derivative must be in (0, 1) (the identity has derivative 1), got {value}")
        return value

    @model_validator(mode="after")
    def _bins_fit(self):
        for name in ("min_width", "min_height"):
            value = getattr(self, name)
            if not 0 < value * self.bins < 1:
                raise ValueError(f"{name} must be in (0, 1/bins) so that {self.bins} bins fit, got {value}")
        return self

    @property
    def params_per_entry(self) -> int:
        return 3 * self.bins - 1

    def build(self) -> "RationalQuadraticSpline":
        return RationalQuadraticSpline(self.bins, self.bound, self.min_width, self.min_height, self.min_derivative)

    def cost(self) -> TransformCost:
        """Per entry, ``K`` bins: two softmaxes (exp, sum, divide, rescale: ~5K each), two cumsums
        (K each), the softplus of K-1 derivatives (~4K), the bin search (~log2 K comparisons, counted
        as K), the gathers of 6 bin values, the rational function (~20) and its log-det (~15: two
        logs, squares); the inverse swaps the rational function for the quadratic root (~25: a
        square root and a division). Clamping and the outside-the-bound select add ~6."""
        k = self.bins
        shared = 5 * k * 2 + 2 * k + 4 * k + k + 6 + 6
        return TransformCost(flops_forward=shared + 20.0, flops_inverse=shared + 25.0, flops_logdet=15.0,
                             # measured: knots, the two ends' gathers, the rational function's terms (the
                             # written-out softmax and one gather per table keep 2K - 1 fewer than before)
                             ops=40, saved=1.5 * k + 18)


class RationalQuadraticSpline(ElementwiseTransform):
    def __init__(self, bins: int, bound: float, min_width: float, min_height: float, min_derivative: float):
        super().__init__()
        self.bins, self.bound = bins, bound
        self.min_width, self.min_height, self.min_derivative = min_width, min_height, min_derivative
        # softplus(c0) + min_derivative = 1: zero raw derivatives give the identity
        self.derivative_shift = math.log(math.expm1(1.0 - min_derivative))

    def _knots(self, raw: Tensor, minimum: float) -> Tensor:
        """Knots (..., K+1) from -B to B exactly, bins at least ``2B minimum`` apart.

        The softmax is written out, ``e / sum(e)`` with ``e = exp(raw - max raw)`` and the max
        detached (a softmax does not depend on the shift, so its gradient is the same): on CPU,
        ``torch.softmax`` over a short last axis (K = 8) measured 2x slower forward and backward."""
        k, bound = self.bins, self.bound
        e = torch.exp(raw - raw.detach().amax(-1, keepdim=True))
        sizes = e * ((2 * bound * (1 - k * minimum)) / e.sum(-1, keepdim=True)) + 2 * bound * minimum
        inner = torch.cumsum(sizes[..., :-1], dim=-1) - bound
        return F.pad(F.pad(inner, (1, 0), value=-bound), (0, 1), value=bound)

    def _bins(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x-knots, y-knots and knot derivatives, each (..., K+1), the parameter axis last."""
        k = self.bins
        raw = params.movedim(1, -1).contiguous()  # reductions along a strided axis are slower on CPU
        xs = self._knots(raw[..., :k], self.min_width)
        ys = self._knots(raw[..., k:2 * k], self.min_height)
        inner = self.min_derivative + F.softplus(raw[..., 2 * k:] + self.derivative_shift)
        return xs, ys, F.pad(inner, (1, 1), value=1.0)

    @staticmethod
    def _ends(index: Tensor, *tables: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each table's values at the bin's two ends, ``index`` and ``index + 1`` (one gather each)."""
        both = torch.cat([index, index + 1], dim=-1)
        return [tuple(table.gather(-1, both).unbind(-1)) for table in tables]

    def _locate(self, knots: Tensor, v: Tensor) -> Tensor:
        """The bin of each ``v`` in ``[-B, B]``: the number of interior knots ``<= v``."""
        inner = knots[..., 1:-1].contiguous()
        return torch.searchsorted(inner, v.unsqueeze(-1).contiguous(), right=True)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = x.abs() <= self.bound
        v = x.clamp(-self.bound, self.bound)
        xs, ys, derivatives = self._bins(params)
        (x0, x1), (y0, y1), (d0, d1) = self._ends(self._locate(xs, v), xs, ys, derivatives)
        w, h = x1 - x0, y1 - y0
        s = h / w
        xi = ((v - x0) / w).clamp(0, 1)
        rest = 1 - xi
        between = xi * rest
        xi2 = xi * xi
        denominator = s + (d1 + d0 - 2 * s) * between
        y = y0 + h * (s * xi2 + d0 * between) / denominator
        numerator = s * s * (d1 * xi2 + 2 * s * between + d0 * (rest * rest))
        logdet = torch.log(numerator / (denominator * denominator))
        return torch.where(inside, y, x), torch.where(inside, logdet, 0.0)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = y.abs() <= self.bound
        v = y.clamp(-self.bound, self.bound)
        xs, ys, derivatives = self._bins(params)
        (x0, x1), (y0, y1), (d0, d1) = self._ends(self._locate(ys, v), xs, ys, derivatives)
        w, h = x1 - x0, y1 - y0
        s = h / w
        dy = v - y0
        delta = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * delta
        b = h * d0 - dy * delta
        c = -s * dy
        discriminant = (b * b - 4 * a * c).clamp_min(0)
        xi = (2 * c / (-b - torch.sqrt(discriminant))).clamp(0, 1)
        x = x0 + xi * w
        rest = 1 - xi
        between = xi * rest
        denominator = s + delta * between
        numerator = s * s * (d1 * xi * xi + 2 * s * between + d0 * (rest * rest))
        logdet = torch.log(denominator * denominator / numerator)
        return torch.where(inside, x, y), torch.where(inside, logdet, 0.0)
