r"""``mixlogistic``: the logistic-mixture CDF coupling of Flow++ (Ho et al. 2019, arXiv:1902.00275,
sec. 3.2), the CDF followed by an inverse sigmoid and an affine map.

With ``K`` components, ``z_k = (x - mu_k) / s_k``, ``F(x) = sum_k pi_k sigmoid(z_k)``:

forward:  ``y = exp(a) logit(F(x)) + b``
log-det:  ``a + log f(x) - log F(x) - log(1 - F(x))``, ``f = F' = sum_k pi_k sigmoid(z_k) sigmoid(-z_k) / s_k``
inverse:  ``x = F^{-1}(sigmoid((y - b) exp(-a)))`` by bisection (below)

Everything runs in log space, so nothing is clamped and nothing overflows: ``log F =
logsumexp_k(log pi_k + logsigmoid(z_k))``, ``log(1 - F) = logsumexp_k(log pi_k +
logsigmoid(-z_k))`` (``1 - F = sum pi_k sigmoid(-z_k)``), ``logit F = log F - log(1 - F)``,
``log f = logsumexp_k(log pi_k + logsigmoid(z_k) + logsigmoid(-z_k) - log s_k)``. ``F`` is never
rounded to 0 or 1 first, which is where a clamp would be needed (Flow++'s code clips ``F`` to
``[0, 1]``); ``logit F`` is finite for every finite ``x`` (at ``x = +-50`` in float32 too).

Bisection: ``logit F`` lies between ``min_k z_k`` and ``max_k z_k`` (``F`` is a convex combination
of the ``sigmoid(z_k)`` and ``logit`` is increasing), so the root of ``logit F(x) = u`` lies in
``[min_k(mu_k + s_k u), max_k(mu_k + s_k u)]``. ``bisection`` halvings of that bracket (a fixed
count: no data-dependent loop, so the inverse exports) leave an error at most
``width / 2^(bisection + 1)``; at the default 40 that is below 1e-12 of the bracket's width, under
float32 round-off, so the float32 round trip is set by the round-off of ``F`` itself (measured:
``tests/test_mixlogistic.py``, docs/math.md).

``3K + 2`` parameters per entry: ``a_raw``, ``b``, then ``K`` logits of ``pi``, ``K`` means,
``K`` log-scales. ``a = tanh(a_raw)`` and ``log s_k = max(raw, -7)``, as in Flow++'s code; all-zero
parameters give ``F = sigmoid``, ``a = b = 0``: the identity.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from flowspec.layers.transforms.base import ElementwiseTransform, TransformConfig, TransformCost, register_transform

MIN_LOG_SCALE = -7.0


@register_transform
class MixLogisticTransform(TransformConfig):
    kind: Literal["mixlogistic"] = "mixlogistic"
    iterative_inverse = True
    components: int = Field(4, description="K, the number of logistic components (at least 2)",
                            json_schema_extra={"minimum": 2})
    bisection: int = Field(40, description="halvings of the inverse's bracket (error <= width / 2^(n+1))",
                           json_schema_extra={"minimum": 1, "maximum": 200})

    @field_validator("components")
    @classmethod
    def _at_least_two(cls, components: int) -> int:
        if components < 2:
            raise ValueError(f"components must be at least 2 (one logistic is an affine map after "
                             f"the logit), got {components}")
        return components

    @field_validator("bisection")
    @classmethod
    def _iterations(cls, bisection: int) -> int:
        if not 1 <= bisection <= 200:
            raise ValueError(f"bisection must be in [1, 200] halvings, got {bisection}")
        return bisection

    @property
    def params_per_entry(self) -> int:
        return 3 * self.components + 2

    def build(self) -> "MixLogistic":
        return MixLogistic(self.components, self.bisection)

    def cost(self) -> TransformCost:
        """Per entry, ``K`` components: the log-softmax of the logits (~4K), ``z`` (~3K: exp of
        ``-log s``, subtract, multiply), two logsigmoids (~4K each) and two logsumexps (~4K each)
        for ``logit F``, then ``exp(a) u + b`` (~4): ~23K + 4 forward; the log-det adds a third
        logsumexp and the sum of log-pdfs (~8K + 4). The inverse runs ``logit F`` once per
        bisection step (~17K + 4 each, the logits' softmax shared) plus the bracket (~3K) and
        the log-det at the root (the forward's 31K + 8)."""
        k, n = self.components, self.bisection
        forward = 23.0 * k + 4
        logdet = 8.0 * k + 4
        inverse = n * (17.0 * k + 4) + 3 * k + forward + logdet
        return TransformCost(flops_forward=forward, flops_inverse=inverse, flops_logdet=logdet,
                             ops=30, saved=float(5 * k + 5))  # measured: z, logsigmoids, logsumexp inputs


class MixLogistic(ElementwiseTransform):
    def __init__(self, components: int, bisection: int):
        super().__init__()
        self.components, self.bisection = components, bisection

    def _unpack(self, params: Tensor):
        """(a, b, log pi, mu, log s), the component axis last."""
        k = self.components
        raw = params.movedim(1, -1)
        log_pi = torch.log_softmax(raw[..., 2:2 + k], dim=-1)
        means = raw[..., 2 + k:2 + 2 * k]
        log_scales = raw[..., 2 + 2 * k:].clamp_min(MIN_LOG_SCALE)
        return torch.tanh(raw[..., 0]), raw[..., 1], log_pi, means, log_scales

    @staticmethod
    def _logit_cdf(x: Tensor, log_pi: Tensor, means: Tensor, log_scales: Tensor):
        """(logit F(x), log F, log(1 - F), log sigmoid(z), log sigmoid(-z))."""
        z = (x.unsqueeze(-1) - means) * torch.exp(-log_scales)
        low, high = F.logsigmoid(z), F.logsigmoid(-z)
        log_cdf = torch.logsumexp(log_pi + low, dim=-1)
        log_sf = torch.logsumexp(log_pi + high, dim=-1)
        return log_cdf - log_sf, log_cdf, log_sf, low, high

    def _logdet(self, x: Tensor, a: Tensor, log_pi: Tensor, means: Tensor, log_scales: Tensor):
        u, log_cdf, log_sf, low, high = self._logit_cdf(x, log_pi, means, log_scales)
        log_pdf = torch.logsumexp(log_pi + low + high - log_scales, dim=-1)
        return u, a + log_pdf - log_cdf - log_sf

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, b, log_pi, means, log_scales = self._unpack(params)
        u, logdet = self._logdet(x, a, log_pi, means, log_scales)
        return torch.exp(a) * u + b, logdet

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        a, b, log_pi, means, log_scales = self._unpack(params)
        u = (y - b) * torch.exp(-a)
        with torch.no_grad():
            ends = means.detach() + torch.exp(log_scales.detach()) * u.detach().unsqueeze(-1)
            low, high = ends.min(dim=-1).values, ends.max(dim=-1).values
            lp, mu, ls, target = log_pi.detach(), means.detach(), log_scales.detach(), u.detach()
            for _ in range(self.bisection):
                middle = (low + high) / 2
                below = self._logit_cdf(middle, lp, mu, ls)[0] < target
                low = torch.where(below, middle, low)
                high = torch.where(below, high, middle)
            x = (low + high) / 2
        x = self._attach(x, u, a, log_pi, means, log_scales)
        _, logdet = self._logdet(x, a, log_pi, means, log_scales)
        return x, -logdet

    def _attach(self, x: Tensor, u: Tensor, a: Tensor, log_pi: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
        """The root ``x`` with the gradient of the implicit function ``logit F(x; theta) = u``
        (one Newton step of zero length: ``x + (u - g(x)) / g'(x)`` with ``g(x)`` detached at the
        value it has, so the value is the bisection's root and the gradient is the implicit one)."""
        if not (torch.is_grad_enabled() and (u.requires_grad or log_pi.requires_grad)):
            return x
        g, log_cdf, log_sf, low, high = self._logit_cdf(x, log_pi, means, log_scales)
        log_pdf = torch.logsumexp(log_pi + low + high - log_scales, dim=-1)
        slope = torch.exp(log_pdf - log_cdf - log_sf).detach()
        return x + (u - g) / slope - ((u - g) / slope).detach()
