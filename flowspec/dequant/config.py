"""Spec models of ``dequantization:`` and ``preprocess:`` (re-exported by :mod:`flowspec.spec.models`).

* ``{kind: uniform}``: ``u ~ U[0,1)^D`` (Theis et al. 2016, arXiv:1511.01844).
* ``{kind: variational, steps: K, hidden: H, context: {...}}``: ``u = h(eps; x)``, ``eps ~ N(0, I)``,
  a conditional flow of K steps (actnorm -> invconv -> affine coupling that also sees a context
  computed from ``x``) ending in a sigmoid (Flow++, Ho et al. 2019, arXiv:1902.00275, sec. 3.1).
* ``preprocess: {kind: logit, alpha: a}``: ``y = logit(a + (1 - 2a) v / n)`` (RealNVP, Dinh et al.
  2017, arXiv:1605.08803, sec. 4.1); its log-det enters the bound like the scaling's ``-D log n``.

Only shape-free checks live here; rules that need the input's shape (a 1-feature vector, a conv
context on vectors) are checked by :func:`flowspec.dequant.graph.dequantizer_nodes`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UniformDequantization(_Strict):
    """``y = (x + u) / n (- 1/2 when centred)``, ``u ~ U[0, 1)^D``."""

    kind: Literal["uniform"] = "uniform"
    centred: bool = True


class ContextConfig(_Strict):
    """The network that computes the context ``c(x)`` every coupling of the variational
    dequantizer sees: convs (``kernel``, padding keeps H x W) with ReLU for images, linear + ReLU
    for vectors; ``depth`` layers of width ``hidden``. ``kind`` defaults to the input's
    (``conv`` for images, ``mlp`` for vectors)."""

    kind: Optional[Literal["conv", "mlp"]] = None
    hidden: PositiveInt = 32
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    kernel: Annotated[int, Field(ge=1, le=7)] = 3

    @field_validator("kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd so the context keeps the image's H x W, got {kernel}")
        return kernel


class VariationalDequantization(_Strict):
    """Flow++'s variational dequantizer: ``u = sigmoid(g(eps; c(x)))`` with ``g`` K conditional
    steps (actnorm -> invconv -> affine coupling whose conditioner sees ``c(x)``)."""

    kind: Literal["variational"] = "variational"
    steps: Annotated[int, Field(ge=1, le=32)] = 2
    hidden: PositiveInt = Field(32, description="width of each coupling's conditioner")
    context: ContextConfig = Field(default_factory=ContextConfig)
    centred: bool = True


Dequantization = Annotated[Union[UniformDequantization, VariationalDequantization], Field(discriminator="kind")]


class LogitPreprocess(_Strict):
    """``y = logit(alpha + (1 - 2 alpha) v / n)``, log-det
    ``sum(log(1 - 2 alpha) - log n - log p - log(1 - p))`` with ``p = alpha + (1 - 2 alpha) v / n``."""

    kind: Literal["logit"] = "logit"
    alpha: float = 0.05

    @field_validator("alpha")
    @classmethod
    def _inside(cls, alpha: float) -> float:
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5) so that alpha + (1 - 2 alpha) v / n stays in "
                             f"(0, 1), got {alpha}")
        return alpha


Preprocess = Annotated[Union[LogitPreprocess], Field(discriminator="kind")]
