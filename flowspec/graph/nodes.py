"""The nodes of a flow's graph: each states once, from its kind's config and the shapes the graph
inferred, what every later stage reads of it.

A node carries its ``config``, ``in_shape`` / ``out_shape``, the ``context`` it is built and costed
with (the condition's shape on its context edge, or None), its ``cost`` and ``matmuls`` (the kind's
cost rule at those shapes, computed on first use: validating never calls it) and ``build()`` (the
kind's module at those shapes). The passes over a graph's :attr:`~flowspec.graph.build.FlowGraph.nodes`
are then one line each, as torch.fx's interpreter and shape passes are over its nodes:

* compile: ``module = node.build()`` (:class:`~flowspec.compile.model.FlowModel`);
* report: one :class:`~flowspec.core.costs.Part` per node from ``node.cost`` and ``node.matmuls``
  (:func:`~flowspec.report.costs.flow_parts`);
* render: labels and context edges from the nodes (:mod:`flowspec.render.diagram`);
* check: the narrow copy narrows each layer node's config (:func:`~flowspec.compile.check.narrow_spec`);
* invertible backprop: the runs of layers between factoring nodes (:func:`invertible_runs`).

Besides the layers of the flow (:class:`~flowspec.graph.build.LayerNode`), the dequantizer, a
table's typed columns, the condition's embedding and the top prior are nodes
(:class:`DequantizerNode`, :class:`ColumnsNode`, :class:`ConditionNode`, :class:`PriorNode`); a
split's prior is a :class:`LatentNode` of its split, costed and built inside the split's kind.
Nothing here names a kind: each node asks its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from flowspec.core.costs import LayerCost, MatmulOp, Shape

_SUMMED = ("params", "flops_forward", "flops_inverse", "activations", "ops")


@dataclass(frozen=True)
class DequantizerNode:
    """``v = x + u``, ``u ~ q(u|x)`` on discrete data (the ``dequantization:`` kind): runs in
    training steps, not when sampling."""

    config: object
    in_shape: Shape
    levels: int
    name: str = "dequantizer"
    path: tuple = ("dequantization",)
    level: int | None = None
    context: None = None
    sampling: bool = False

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    @property
    def kind(self) -> str:
        return f"dequantizer ({self.config.kind})"

    @cached_property
    def cost(self) -> LayerCost:
        return self.config.cost(self.in_shape)

    @property
    def matmuls(self) -> tuple[MatmulOp, ...]:
        return ()

    def build(self):
        return self.config.build(self.in_shape, self.levels)


@dataclass(frozen=True)
class ColumnsNode:
    """A table's typed columns (``input.columns``): ``x -> v -> y`` per row, before the first layer."""

    entries: tuple
    in_shape: Shape
    name: str = "columns"
    path: tuple = ("input", "columns")
    level: int | None = None
    context: None = None
    sampling: bool = True

    @property
    def config(self) -> tuple:
        return self.entries

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    @property
    def kind(self) -> str:
        return "columns (" + ", ".join(sorted({entry.kind for entry in self.entries})) + ")"

    @cached_property
    def cost(self) -> LayerCost:
        """The sum of each entry's cost rule over its columns."""
        total = LayerCost()
        for entry in self.entries:
            part = entry.cost(len(entry.columns))
            total = LayerCost(**{key: getattr(total, key) + getattr(part, key) for key in _SUMMED})
        return total

    @property
    def matmuls(self) -> tuple[MatmulOp, ...]:
        return ()

    def build(self):
        from flowspec.columns import TypedColumns

        return TypedColumns(self.entries, self.in_shape[0])


@dataclass(frozen=True)
class ConditionNode:
    """``h = e(c)``: the condition's embedding (the ``condition:`` kind), whose features ``(E,)``
    reach every node with a context edge."""

    config: object
    name: str = "condition"
    path: tuple = ("condition",)
    level: int | None = None
    context: None = None
    sampling: bool = True

    @property
    def in_shape(self) -> Shape:
        return tuple(self.config.input_shape)

    @property
    def out_shape(self) -> Shape:
        return (self.config.features,)

    @property
    def kind(self) -> str:
        return f"condition ({self.config.kind})"

    @property
    def detail(self) -> str:
        return self.config.detail()

    @cached_property
    def cost(self) -> LayerCost:
        return self.config.cost()

    @cached_property
    def matmuls(self) -> tuple[MatmulOp, ...]:
        return tuple(self.config.matmul_ops())

    def build(self):
        return self.config.build()


@dataclass(frozen=True)
class PriorNode:
    """The top prior ``p(z_top)`` (the ``prior:`` kind) at the last layer's output, shifted by the
    condition's ``features`` when ``condition.prior`` is ``conditional`` (0 otherwise)."""

    config: object
    in_shape: Shape
    features: int = 0
    name: str = "prior"
    path: tuple = ("prior",)
    level: int | None = None
    sampling: bool = True

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    @property
    def context(self) -> Shape | None:
        return (self.features,) if self.features else None

    @property
    def kind(self) -> str:
        return f"prior ({self.config.kind})"

    @cached_property
    def cost(self) -> LayerCost:
        return self.config.cost(self.in_shape, self.features)

    @cached_property
    def matmuls(self) -> tuple[MatmulOp, ...]:
        return tuple(self.config.matmul_ops(self.in_shape, self.features))

    def build(self):
        return self.config.build(self.in_shape, self.features)


@dataclass(frozen=True)
class LatentNode:
    """A latent a layer factors out (``owner``, a split) to its own prior (``prior``: the kind's
    name, or the kind's prior config); the owner's kind costs and builds that prior."""

    name: str
    owner: str
    shape: Shape
    prior: object = field(default=None)


def invertible_runs(kinds_factor_out: list[bool]) -> list[tuple[int, int, bool]]:
    """``(start, stop, factors_out)`` over layer indices in flow order: maximal runs of layers that
    factor out nothing (``factors_out`` False; invertible backprop recomputes their activations
    by inversion), and each factoring layer on its own (True)."""
    runs: list[tuple[int, int, bool]] = []
    start = 0
    for index, factors in enumerate(kinds_factor_out):
        if factors:
            if start < index:
                runs.append((start, index, False))
            runs.append((index, index + 1, True))
            start = index + 1
    if start < len(kinds_factor_out):
        runs.append((start, len(kinds_factor_out), False))
    return runs
