"""Top-prior kinds (``prior:``), one file each; importing this package registers them all
(:data:`PRIOR_KINDS`) and builds the spec's :data:`Prior` union."""

from flowspec.layers.kinds import import_all, kind_union
from flowspec.priors.base import PRIOR_KINDS, GaussianPrior, PriorConfig, register_prior

import_all(__name__, __path__)

from flowspec.priors.learned import LearnedPrior  # noqa: E402

Prior = kind_union(PRIOR_KINDS, "prior")


def TopPrior(shape, kind: str = "learned", context: int = 0):  # noqa: N802  (the old module's name)
    """The module of the top prior of kind ``kind`` (a registered name) on a latent of ``shape``."""
    if kind not in PRIOR_KINDS:
        raise ValueError(f"unknown top prior {kind!r}: expected one of {', '.join(sorted(PRIOR_KINDS))}")
    return PRIOR_KINDS[kind]().build(tuple(shape), context)


__all__ = ["PRIOR_KINDS", "GaussianPrior", "LearnedPrior", "Prior", "PriorConfig", "TopPrior", "register_prior"]
