"""The result of ``flowspec check``, whatever the family: the worst round-trip and log-det errors
of a model's exact maps, against a tolerance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    input_shape: tuple
    roundtrip_error: float
    logdet_error: float
    inverse_logdet_error: float
    tolerance: float
    #: largest Jacobian entry that an autoregressive map must not have (on or above its diagonal)
    triangular_error: float | None = None
    checked: str = "flow"

    @property
    def ok(self) -> bool:
        errors = (self.roundtrip_error, self.logdet_error, self.inverse_logdet_error, self.triangular_error or 0.0)
        return max(errors) <= self.tolerance
