"""``{kind: class, classes: N, embed: E}``: ``c`` is a label ``0 .. N-1``; its features are a learned
embedding row ``e(c) = T[c] in R^E`` (a lookup of an ``N x E`` table, initialised ``N(0, 1)``).
With ``prior: conditional`` the top and split priors also get ``(mu, log sigma) += W e(c)``, ``W``
zero-initialised, as Glow's ``ycond`` (Kingma & Dhariwal 2018, arXiv:1807.03039).

``drop: p`` (classifier-free guidance, Ho & Salimans 2022, arXiv:2207.12598; TarFlow,
arXiv:2412.06329): in training each label is replaced by a learned null class ``T[N]`` with
probability ``p``, so the model also learns ``p(x)``; sampling with guidance ``w`` mixes the
parameters given ``c`` and given the null class, ``theta_c + w (theta_c - theta_0)``."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from flowspec.conditions.base import ConditionConfig, ConditionEmbedding, register_condition
from flowspec.errors import ConditionError
from flowspec.core.costs import LayerCost, Shape


@register_condition
class ClassCondition(ConditionConfig):
    """A class label ``c in {0 .. classes-1}``, embedded as ``e(c) = T[c]``, ``T`` of shape
    ``classes x embed``."""

    kind: Literal["class"] = "class"
    classes: Annotated[int, Field(ge=2, le=100_000)] = Field(description="number of classes N")
    embed: PositiveInt = Field(16, description="size E of the learned embedding each layer sees")
    drop: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="label dropout in training: each label becomes a learned null class with probability p "
                         "(0 <= p < 1), which classifier-free guidance (sample --guidance) needs")

    labelled: ClassVar[bool] = True

    @property
    def features(self) -> int:
        return self.embed

    @property
    def input_shape(self) -> Shape:
        return (1,)

    @property
    def rows(self) -> int:
        """Rows of the embedding table: the classes, and the null class with ``drop > 0``."""
        return self.classes + (1 if self.drop > 0 else 0)

    def cost(self) -> LayerCost:
        """A table lookup: ``N E`` parameters (``(N + 1) E`` with the null class), no FLOPs; one op."""
        return LayerCost(params=self.rows * self.embed, activations=self.embed, ops=1)

    def null_problem(self) -> str | None:
        if self.drop > 0:
            return None
        return ("condition.drop is 0: guidance needs a model trained with label dropout to a null class "
                "(condition: {kind: class, drop: 0.1, ...})")

    def describe(self) -> str:
        return f"condition: {{kind: class, classes: {self.classes}}}"

    def detail(self) -> str:
        return f"class 0..{self.classes - 1} -> embed {self.embed}"

    def missing_hint(self) -> str:
        return "labels c=tensor([...]) or c=3"

    def data_requirements(self) -> dict:
        return {"classes": self.classes}

    def as_tensor(self, c, batch: int | None, device=None, dtype=None, tracing: bool = False) -> Tensor:
        """int64 ``(batch,)`` labels in ``0 .. classes-1``; an int is repeated ``batch`` times."""
        if not (isinstance(c, Tensor) and (device is None or c.device == device)):
            c = torch.as_tensor(c, device=device)
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ConditionError(f"class labels must be integers, got dtype {c.dtype} ({self.describe()})")
        if c.dim() == 0 and batch is not None:
            c = c.expand(batch)
        if c.dim() != 1:
            raise ConditionError(f"class labels must have shape (batch,), got {tuple(c.shape)}")
        if not tracing and c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.classes):
            bad = int(c.min()) if int(c.min()) < 0 else int(c.max())
            raise ConditionError(f"label {bad} is outside 0..{self.classes - 1} ({self.describe()})")
        return c.long()

    def random(self, n: int, generator=None) -> Tensor:
        """``n`` labels drawn uniformly (what ``check``, ``report --measure`` and the export feed)."""
        return torch.randint(0, self.classes, (n,), generator=generator)

    def build(self) -> ConditionEmbedding:
        if self.drop > 0:
            return DroppedLabels(nn.Embedding(self.rows, self.embed), self.drop)
        return ConditionEmbedding(nn.Embedding(self.classes, self.embed))


class DroppedLabels(ConditionEmbedding):
    """``T[c]``, with each label replaced by the null class ``N`` (the table's last row) with
    probability ``drop`` in training mode."""

    def __init__(self, table: nn.Embedding, drop: float):
        super().__init__(table)
        self.drop, self.null = drop, table.num_embeddings - 1

    def forward(self, c: Tensor) -> Tensor:
        if self.training:
            c = torch.where(torch.rand(c.shape, device=c.device) < self.drop, torch.full_like(c, self.null), c)
        return self.net(c)

    def null_features(self, n: int) -> Tensor:
        return self.net.weight[self.null].expand(n, -1)
