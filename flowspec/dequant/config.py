"""Spec models of ``dequantization:`` and ``preprocess:`` (re-exported by :mod:`flowspec.spec.models`).

``dequantization:`` is one of the registered dequantizer kinds (:data:`DEQUANTIZER_KINDS`; each
kind is one file with its config, cost rule and module: ``uniform.py``, ``variational.py``), a bare
name (``uniform``) short for ``{kind: uniform}``.

* ``preprocess: {kind: logit, alpha: a}``: ``y = logit(a + (1 - 2a) v / n)`` (RealNVP, Dinh et al.
  2017, arXiv:1605.08803, sec. 4.1); its log-det enters the bound like the scaling's ``-D log n``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowspec.dequant.base import CLUSTER, DEQUANTIZER_KINDS, PATH, DequantizerConfig, register_dequantizer  # noqa: F401
from flowspec.dequant.uniform import UniformDequantization  # noqa: F401
from flowspec.dequant.variational import (LOG_SCALE_CLAMP, ContextConfig, DequantCoupling,  # noqa: F401
                                          VariationalDequantization, step_coupling)
from flowspec.layers.kinds import kind_union


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite


Dequantization = kind_union(DEQUANTIZER_KINDS, "dequantization")


class LogitPreprocess(_Strict):
    """``y = logit(alpha + (1 - 2 alpha) v / n)``, log-det
    ``sum(log(1 - 2 alpha) - log n - log p - log(1 - p))`` with ``p = alpha + (1 - 2 alpha) v / n``."""

    kind: Literal["logit"] = "logit"
    alpha: float = 0.05

    #: the dequantizer graph's model-space node: its formula and the spec section it comes from
    formula: ClassVar[str] = "y = logit(alpha + (1 - 2 alpha) (x + u) / n)"
    path: ClassVar[tuple] = ("preprocess",)

    @field_validator("alpha")
    @classmethod
    def _inside(cls, alpha: float) -> float:
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5) so that alpha + (1 - 2 alpha) v / n stays in "
                             f"(0, 1), got {alpha}")
        return alpha


Preprocess = Annotated[Union[LogitPreprocess], Field(discriminator="kind")]
