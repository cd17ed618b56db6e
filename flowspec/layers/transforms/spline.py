r"""``spline``: monotonic rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows",
arXiv:1906.04032, sec. 3.1), identity outside ``[-B, B]``.

``K`` bins with widths ``w_k`` and heights ``h_k`` (each summing to ``2B``) give knots
``(x_k, y_k)`` from ``(-B, -B)`` to ``(B, B)``; ``d_k > 0`` are the derivatives at the knots, with
``d_0 = d_K = 1`` so that the spline joins the identity outside the bound. In bin ``k``, with
``s = h_k / w_k`` and ``xi = (x - x_k) / w_k`` in ``[0, 1]``:

forward:  ``y = y_k + h_k (s xi^2 + d_k xi (1 - xi)) / (s + (d_{k+1} + d_k - 2 s) xi (1 - xi))``
log-det:  ``log(s^2 (d_{k+1} xi^2 + 2 s xi (1 - xi) + d_k (1 - xi)^2)) - 2 log(s + (d_{k+1} + d_k - 2 s) xi (1 - xi))``
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
                             ops=40, saved=3.5 * k + 17)  # measured: bins, knots, gathers, the rational function's terms


class RationalQuadraticSpline(ElementwiseTransform):
    def __init__(self, bins: int, bound: float, min_width: float, min_height: float, min_derivative: float):
        super().__init__()
        self.bins, self.bound = bins, bound
        self.min_width, self.min_height, self.min_derivative = min_width, min_height, min_derivative
        # softplus(c0) + min_derivative = 1: zero raw derivatives give the identity
        self.derivative_shift = math.log(math.expm1(1.0 - min_derivative))

    def _knots(self, raw: Tensor, minimum: float) -> tuple[Tensor, Tensor]:
        """(sizes (..., K), knots (..., K+1) from -B to B exactly)."""
        k, bound = self.bins, self.bound
        sizes = 2 * bound * (minimum + (1 - k * minimum) * torch.softmax(raw, dim=-1))
        knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0)) - bound
        knots = torch.cat([knots[..., :1].clamp(-bound, -bound), knots[..., 1:-1],
                           knots[..., -1:].clamp(bound, bound)], dim=-1)
        return knots[..., 1:] - knots[..., :-1], knots

    def _bins(self, params: Tensor):
        """Widths, heights, knots and knot derivatives, the parameter axis last."""
        k = self.bins
        raw = params.movedim(1, -1)
        widths, xs = self._knots(raw[..., :k], self.min_width)
        heights, ys = self._knots(raw[..., k:2 * k], self.min_height)
        inner = self.min_derivative + F.softplus(raw[..., 2 * k:] + self.derivative_shift)
        ones = inner.new_ones(*inner.shape[:-1], 1)
        derivatives = torch.cat([ones, inner, ones], dim=-1)
        return widths, heights, xs, ys, derivatives

    @staticmethod
    def _pick(index: Tensor, *tables: Tensor) -> list[Tensor]:
        return [table.gather(-1, index).squeeze(-1) for table in tables]

    def _locate(self, knots: Tensor, v: Tensor) -> Tensor:
        """The bin of each ``v`` in ``[-B, B]``: the number of interior knots ``<= v``."""
        inner = knots[..., 1:-1].contiguous()
        return torch.searchsorted(inner, v.unsqueeze(-1).contiguous(), right=True)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = (x >= -self.bound) & (x <= self.bound)
        v = x.clamp(-self.bound, self.bound)
        widths, heights, xs, ys, derivatives = self._bins(params)
        index = self._locate(xs, v)
        w, h, x0, y0, d0 = self._pick(index, widths, heights, xs, ys, derivatives)
        (d1,) = self._pick(index + 1, derivatives)
        s = h / w
        xi = ((v - x0) / w).clamp(0, 1)
        between = xi * (1 - xi)
        denominator = s + (d1 + d0 - 2 * s) * between
        y = y0 + h * (s * xi ** 2 + d0 * between) / denominator
        numerator = s ** 2 * (d1 * xi ** 2 + 2 * s * between + d0 * (1 - xi) ** 2)
        logdet = torch.log(numerator) - 2 * torch.log(denominator)
        return torch.where(inside, y, x), torch.where(inside, logdet, torch.zeros_like(logdet))

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = (y >= -self.bound) & (y <= self.bound)
        v = y.clamp(-self.bound, self.bound)
        widths, heights, xs, ys, derivatives = self._bins(params)
        index = self._locate(ys, v)
        w, h, x0, y0, d0 = self._pick(index, widths, heights, xs, ys, derivatives)
        (d1,) = self._pick(index + 1, derivatives)
        s = h / w
        dy = v - y0
        delta = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * delta
        b = h * d0 - dy * delta
        c = -s * dy
        discriminant = (b ** 2 - 4 * a * c).clamp_min(0)
        xi = (2 * c / (-b - torch.sqrt(discriminant))).clamp(0, 1)
        x = x0 + xi * w
        between = xi * (1 - xi)
        denominator = s + delta * between
        numerator = s ** 2 * (d1 * xi ** 2 + 2 * s * between + d0 * (1 - xi) ** 2)
        logdet = 2 * torch.log(denominator) - torch.log(numerator)
        return torch.where(inside, x, y), torch.where(inside, logdet, torch.zeros_like(logdet))
