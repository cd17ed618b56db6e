"""The condition of a conditional flow ``p(x | c)``: checking what a caller passes, and its features.

The condition's kind (``condition:`` in the spec, :mod:`flowspec.conditions`) builds the embedding
``c -> h = e(c)`` every layer sees and checks a caller's ``c``; this module adds what holds for
every kind: a condition exactly when the spec has one, one per example.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowspec.errors import ConditionError


def check_condition(config, c, batch: int | None, device=None, dtype=None) -> Tensor | None:
    """``c`` as a tensor for a model whose spec's condition is ``config`` (None: unconditional).

    The kind says what a condition is (:meth:`~flowspec.conditions.ConditionConfig.as_tensor`:
    int64 labels ``(batch,)``, float contexts ``(batch, dim)``, one repeated ``batch`` times).
    Raises :class:`ConditionError` when a condition is missing, unexpected or malformed.
    """
    if config is None:
        if c is not None:
            raise ConditionError("this model is unconditional (its spec has no condition:); call it without c")
        return None
    if c is None:
        raise ConditionError(f"this model is conditional ({config.describe()}); pass {config.missing_hint()}")
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()  # no data-dependent checks
    c = config.as_tensor(c, batch, device, dtype, tracing)
    if batch is not None and not tracing and c.shape[0] != batch:
        raise ConditionError(f"{c.shape[0]} conditions for a batch of {batch}; pass one per example")
    return c


def ConditionEmbedding(config):  # noqa: N802  (the module's old constructor, kept for callers)
    """The embedding module ``c -> h`` of a condition config (its kind builds it)."""
    return config.build()


def random_condition(config, n: int, generator: torch.Generator | None = None) -> Tensor | None:
    """``n`` conditions drawn at random (uniform labels, standard normal contexts) for a spec's
    ``condition`` (None without one): what ``check``, ``report --measure`` and the export feed."""
    return None if config is None else config.random(n, generator)
