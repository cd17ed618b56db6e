"""The condition contract: what a conditional flow ``p(x | c)`` is conditioned on (``condition:``).

A condition kind is a pydantic config with ``kind: Literal["name"]`` registered with
:func:`register_condition`, in one file with its embedding module. It knows, as pure functions (no
weight allocated):

* ``features`` -- the size ``E`` of the features ``h = e(c)`` every layer (and, with
  ``prior: conditional``, every prior) sees;
* ``cost()`` / ``matmul_ops()`` -- the embedding's parameters, FLOPs and saved elements per example;
* ``input_shape`` -- the shape of one raw condition (``(1,)`` for a label, ``(D,)`` for a vector);
* ``labelled`` -- whether ``c`` is a class label (the data's labels) or a real vector (its contexts);

and at run time ``as_tensor(c, batch, ...)`` checks and converts what a caller passes (one line
naming what is wrong), ``random(n)`` draws conditions for checks and exports, ``build()`` returns
the embedding ``c -> h``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from flowspec.errors import ConditionError
from flowspec.core.costs import LayerCost, MatmulOp, Shape
from flowspec.layers.kinds import Registry

CONDITION_KINDS = Registry("condition")


def register_condition(config: type["ConditionConfig"]) -> type["ConditionConfig"]:
    """Make a condition kind known to the spec language, the graph, the report and the tests."""
    return CONDITION_KINDS.register(config)


class ConditionConfig(BaseModel):
    """Base of every condition kind's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    kind: str
    prior: Literal["conditional", "plain"] = Field(
        "conditional", description="conditional: the top and split priors get mean and log-std from "
                                   "the condition (Glow's ycond); plain: only the layers see it")

    #: True when ``c`` is a class label (data labels), False for a real vector (data contexts)
    labelled: ClassVar[bool] = False

    @property
    def features(self) -> int:  # pragma: no cover
        raise NotImplementedError

    @property
    def input_shape(self) -> Shape:  # pragma: no cover
        raise NotImplementedError

    def cost(self) -> LayerCost:  # pragma: no cover
        raise NotImplementedError

    def matmul_ops(self) -> list[MatmulOp]:
        return []

    def describe(self) -> str:
        """The spec section in one line, for messages (``condition: {kind: class, classes: 10}``)."""
        return f"condition: {{kind: {self.kind}}}"

    def detail(self) -> str:
        """The graph node's label (``class 0..9 -> embed 16``)."""
        return self.kind

    def missing_hint(self) -> str:
        """What to pass when a conditional model gets no condition."""
        return "a condition c per example"

    def data_requirements(self) -> dict:
        """Keyword arguments of :func:`flowspec.data.load_data` the data must meet."""
        return {}

    def is_one(self, c: Tensor) -> bool:
        """True when ``c`` is one condition for a whole batch (not one per example)."""
        return c.dim() == 0

    def as_tensor(self, c, batch: int | None, device=None, dtype=None, tracing: bool = False) -> Tensor:
        """``c`` checked and converted (raises :class:`ConditionError`); ``batch`` repeats one condition."""
        raise NotImplementedError  # pragma: no cover

    def random(self, n: int, generator=None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def null_problem(self) -> str | None:
        """Why this condition has no null condition to guide from (None when it has one:
        :meth:`ConditionEmbedding.null_features`)."""
        return f"a {self.kind} condition has no null condition to guide from"

    def build(self) -> "ConditionEmbedding":  # pragma: no cover
        raise NotImplementedError


class ConditionEmbedding(nn.Module):
    """``c -> h = net(c)``: the features every layer and conditional prior sees."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c)

    def null_features(self, n: int) -> Tensor:  # pragma: no cover  (the config's null_problem refuses first)
        """The features ``h_0`` of the null condition, ``(n, E)``, for classifier-free guidance."""
        raise ConditionError("this condition has no null condition to guide from")


__all__ = ["CONDITION_KINDS", "ConditionConfig", "ConditionEmbedding", "ConditionError", "register_condition"]
