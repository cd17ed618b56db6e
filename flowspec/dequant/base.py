"""The dequantizer contract: a registered kind per ``dequantization:`` (``uniform``, ``variational``).

A dequantizer kind is a pydantic config with ``kind: Literal["name"]`` registered with
:func:`register_dequantizer`, in one file with its module. It knows, as pure functions of the
data's shape (no weight allocated):

* ``graph_problems(shape, problem)`` -- the rules the input must meet (located problems);
* ``add_noise_nodes(graph, shape, data, out)`` -- its nodes in the flow graph (cluster ``dequantizer``);
* ``cost(shape)`` -- one training-step pass (it does not run when sampling);

and ``build(shape, levels)`` returns its module, ``forward(x) -> (v = x + u, log q(u|x))``.
"""

from __future__ import annotations

from typing import Callable

from pydantic import BaseModel, ConfigDict
from torch import nn

from flowspec.core.costs import LayerCost, Shape
from flowspec.layers.kinds import Registry

CLUSTER = "dequantizer"
PATH = ("dequantization",)

DEQUANTIZER_KINDS = Registry("dequantization")


def register_dequantizer(config: type["DequantizerConfig"]) -> type["DequantizerConfig"]:
    """Make a dequantizer kind known to the spec language, the graph, the report and the tests."""
    return DEQUANTIZER_KINDS.register(config)


class DequantizerConfig(BaseModel):
    """Base of every dequantizer kind's config; ``centred`` maps ``v / n`` to ``v / n - 1/2``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    kind: str
    centred: bool = True

    def graph_problems(self, shape: Shape, problem: Callable) -> list:
        return []

    def add_noise_nodes(self, graph, shape: Shape, data: str, out: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def cost(self, shape: Shape) -> LayerCost:  # pragma: no cover
        raise NotImplementedError

    def build(self, shape: Shape, levels: int) -> nn.Module:  # pragma: no cover
        raise NotImplementedError
