"""Classifier-free guidance for the verbs that draw samples through ``model.sample``: a view of a
model whose ``sample`` guides with a fixed weight (``flowspec sample --guidance W``)."""

from __future__ import annotations

from flowspec.errors import ConditionError


class GuidedSampling:
    """``model`` as it is, but ``sample(n, ...)`` is ``model.sample(n, ..., guidance=weight)``."""

    def __init__(self, model, weight: float):
        self.model, self.weight = model, weight

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def sample(self, n: int, **options):
        return self.model.sample(n, guidance=self.weight, **options)


def guided(model, weight: float) -> GuidedSampling:
    """``model`` sampling with guidance ``weight``; a :class:`ConditionError` (one line) at once when
    guidance cannot apply to it (no condition, ``condition.drop: 0``, a family without guidance)."""
    check = getattr(model, "check_guidance", None)
    if check is None:
        raise ConditionError(f"guidance {weight:g}: a {type(model).__name__} has no classifier-free guidance")
    check(weight)
    return GuidedSampling(model, weight)
