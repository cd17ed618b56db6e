"""The condition of a conditional flow ``p(x | c)``: checking what a caller passes, and its features.

:class:`ConditionEmbedding` maps ``c`` to the features ``h = e(c)`` every layer sees
(``condition:`` in the spec, :mod:`flowspec.spec.condition`): a learned table row ``T[c]`` for a class
label, ``c`` itself or ``MLP(c)`` for a context vector. :func:`check_condition` turns a caller's
``c`` into a tensor of the right kind and says, in one line, what is wrong otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowspec.errors import ConditionError


def _describe(config) -> str:
    if config.kind == "class":
        return f"condition: {{kind: class, classes: {config.classes}}}"
    return f"condition: {{kind: vector, dim: {config.dim}}}"


def check_condition(config, c, batch: int | None, device=None, dtype=None) -> Tensor | None:
    """``c`` as a tensor for a model whose spec's condition is ``config`` (None: unconditional).

    A class condition is int64 ``(batch,)`` with labels in ``0 .. classes-1`` (an int is repeated
    ``batch`` times); a vector condition is float ``(batch, dim)`` (a ``(dim,)`` vector is repeated).
    Raises :class:`ConditionError` when a condition is missing, unexpected or malformed.
    """
    if config is None:
        if c is not None:
            raise ConditionError("this model is unconditional (its spec has no condition:); call it without c")
        return None
    if c is None:
        hint = "labels c=tensor([...]) or c=3" if config.kind == "class" else f"contexts c of shape (batch, {config.dim})"
        raise ConditionError(f"this model is conditional ({_describe(config)}); pass {hint}")
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()  # no data-dependent checks
    if config.kind == "class":
        if not (isinstance(c, Tensor) and (device is None or c.device == device)):
            c = torch.as_tensor(c, device=device)
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ConditionError(f"class labels must be integers, got dtype {c.dtype} ({_describe(config)})")
        if c.dim() == 0 and batch is not None:
            c = c.expand(batch)
        if c.dim() != 1:
            raise ConditionError(f"class labels must have shape (batch,), got {tuple(c.shape)}")
        if not tracing and c.numel() and (int(c.min()) < 0 or int(c.max()) >= config.classes):
            bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
            raise ConditionError(f"label {bad} is outside 0..{config.classes - 1} ({_describe(config)})")
        c = c.long()
    else:
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        if not (isinstance(c, Tensor) and c.dtype == dtype and (device is None or c.device == device)):
            c = torch.as_tensor(c, device=device, dtype=dtype)
        if c.dim() == 1 and batch is not None and c.shape[0] == config.dim:
            c = c.expand(batch, -1)
        if c.dim() != 2 or c.shape[1] != config.dim:
            raise ConditionError(f"contexts must have shape (batch, {config.dim}), got {tuple(c.shape)} "
                                 f"({_describe(config)})")
        if not tracing and not bool(torch.isfinite(c).all()):
            raise ConditionError("contexts hold NaN or inf")
    if batch is not None and not tracing and c.shape[0] != batch:
        raise ConditionError(f"{c.shape[0]} conditions for a batch of {batch}; pass one per example")
    return c


class ConditionEmbedding(nn.Module):
    """``c -> h``: ``T[c]`` (class; ``T`` ``N x E``, initialised ``N(0, 1)``) or ``c`` / ``MLP(c)``
    (vector; Linear -> ReLU per hidden width)."""

    def __init__(self, config):
        super().__init__()
        self.kind = config.kind
        if config.kind == "class":
            self.net = nn.Embedding(config.classes, config.embed)
        else:
            layers: list[nn.Module] = []
            for i, o in config.linears():
                layers += [nn.Linear(i, o), nn.ReLU()]
            self.net = nn.Sequential(*layers)

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c)


def random_condition(config, n: int, generator: torch.Generator | None = None) -> Tensor | None:
    """``n`` conditions drawn at random (uniform labels, standard normal contexts) for a spec's
    ``condition`` (None without one): what ``check``, ``report --measure`` and the export feed."""
    return None if config is None else config.random(n, generator)
