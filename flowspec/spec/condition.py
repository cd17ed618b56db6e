"""Spec models of ``condition:``, the variable a conditional flow ``p(x | c)`` is conditioned on.

* ``{kind: class, classes: N, embed: E}``: ``c`` is a label ``0 .. N-1``; its features are a learned
  embedding row ``e(c) in R^E`` (a lookup of an ``N x E`` table).
* ``{kind: vector, dim: D, hidden: [H1, ...]}``: ``c`` is a real vector ``R^D``; its features are
  ``c`` itself, or, with ``hidden``, the output of a small MLP (Linear -> ReLU per width, the last
  width is the feature size).

Every layer sees the features (a vector, broadcast over pixels by the conditioners). With
``prior: conditional`` (the default) the top prior and every split prior also get a
condition-dependent mean and log-std, ``(mu, log sigma) += W e(c)`` with ``W`` zero-initialised, as
Glow's ``ycond`` (Kingma & Dhariwal 2018, arXiv:1807.03039). Shape and cost rules here are pure:
no weight is allocated (the module is :class:`flowspec.compile.condition.ConditionEmbedding`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from flowspec.layers.base import LayerCost, MatmulOp


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite


class ClassCondition(_Strict):
    """A class label ``c in {0 .. classes-1}``, embedded as ``e(c) = T[c]``, ``T`` of shape
    ``classes x embed``."""

    kind: Literal["class"] = "class"
    classes: Annotated[int, Field(ge=2, le=100_000)] = Field(description="number of classes N")
    embed: PositiveInt = Field(16, description="size E of the learned embedding each layer sees")
    prior: Literal["conditional", "plain"] = Field(
        "conditional", description="conditional: the top and split priors get mean and log-std from "
                                   "the condition (Glow's ycond); plain: only the layers see it")

    @property
    def features(self) -> int:
        return self.embed

    def cost(self) -> LayerCost:
        """A table lookup: ``N E`` parameters, no FLOPs; one op."""
        return LayerCost(params=self.classes * self.embed, activations=self.embed, ops=1)

    def matmul_ops(self) -> list[MatmulOp]:
        return []

    def random(self, n: int, generator=None):
        """``n`` labels drawn uniformly (what ``check``, ``report --measure`` and the export feed)."""
        import torch

        return torch.randint(0, self.classes, (n,), generator=generator)


class VectorCondition(_Strict):
    """A context vector ``c in R^dim``; features ``c`` itself, or ``MLP(c)`` with ``hidden`` widths
    (Linear -> ReLU each; the last width is the feature size)."""

    kind: Literal["vector"] = "vector"
    dim: PositiveInt = Field(description="size D of the context vector")
    hidden: list[PositiveInt] = Field(default_factory=list,
                                      description="widths of the MLP that turns c into features; [] uses c as it is")
    prior: Literal["conditional", "plain"] = Field(
        "conditional", description="conditional: the top and split priors get mean and log-std from "
                                   "the condition (Glow's ycond); plain: only the layers see it")

    @property
    def features(self) -> int:
        return self.hidden[-1] if self.hidden else self.dim

    def linears(self) -> list[tuple[int, int]]:
        sizes = [self.dim, *self.hidden]
        return list(zip(sizes[:-1], sizes[1:]))

    def cost(self) -> LayerCost:
        """The MLP: ``sum(i o + o)`` parameters, ``sum(2 i o)`` matmul FLOPs per example, a ReLU
        per layer."""
        linears = self.linears()
        matmul = sum(2.0 * i * o for i, o in linears)
        return LayerCost(params=sum(i * o + o for i, o in linears), flops_forward=matmul + sum(o for _, o in linears),
                         flops_inverse=matmul, matmul_flops_forward=matmul, matmul_flops_inverse=matmul,
                         activations=sum(o for _, o in linears), ops=2 * len(linears))

    def matmul_ops(self) -> list[MatmulOp]:
        return [MatmulOp(i, o, 1, ()) for i, o in self.linears()]

    def random(self, n: int, generator=None):
        """``n`` standard normal contexts ``(n, dim)``."""
        import torch

        return torch.randn(n, self.dim, generator=generator)


Condition = Annotated[Union[ClassCondition, VectorCondition], Field(discriminator="kind")]
