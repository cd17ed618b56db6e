"""``build_graph``: Spec -> FlowGraph, a directed graph with tensor shapes on its edges.

The graph is pure: every shape comes from a layer kind's shape rule, and no weight is
allocated. Validation happens here, and reports every problem at once with its YAML line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from flowspec.dequant.graph import add_dequantizer_nodes, dequantizer_problems
from flowspec.digraph import Digraph
from flowspec.graph.condition import add_condition_node, context_shape, layer_context, top_prior_context
from flowspec.graph.mixing import mixing_problems
from flowspec.graph.nodes import ColumnsNode, ConditionNode, DequantizerNode, LatentNode, PriorNode, invertible_runs
from flowspec.errors import Problem, RuleViolation, ShapeError
from flowspec.family import family_of
from flowspec.core.costs import LayerCost, MatmulOp, Shape, numel
from flowspec.layers.base import LayerConfig
from flowspec.spec.expand import ExpandedLayer, expand
from flowspec.spec.models import Spec

INPUT = "input"
TOP_PRIOR = "prior"


@dataclass(frozen=True)
class LayerNode:
    """One layer of the explicit list, with the shapes the graph inferred for it."""

    index: int
    name: str
    config: LayerConfig
    path: tuple
    in_shape: Shape
    out_shape: Shape
    factored_shape: Shape | None = None  # the latent a split factors out
    level: int | None = None
    step: int | None = None
    #: the shape of its context edge (the condition's features), None when it is built without one
    context: Shape | None = None
    sampling = True  # a sampling pass runs it (inverted)

    @property
    def kind(self) -> str:
        return self.config.kind

    @cached_property
    def cost(self) -> LayerCost:
        """Its kind's cost rule at its input shape and context."""
        return self.config.cost(self.in_shape, self.context)

    @cached_property
    def matmuls(self) -> tuple[MatmulOp, ...]:
        """The conv / linear ops one forward call runs per example, as its kind declares them."""
        return tuple(self.config.matmul_ops(tuple(self.in_shape), self.context))

    def build(self):
        """Its kind's module at its input shape and context."""
        return self.config.build(self.in_shape, self.context)


@dataclass
class FlowGraph:
    """The validated graph of a spec: ``layers`` in flow order and ``graph`` (a :class:`Digraph`; ``graph.to_networkx()`` for networkx) whose
    edges carry ``shape``; factored latents and the top latent end in prior nodes."""

    spec: Spec
    layers: list[LayerNode]
    graph: Digraph = field(repr=False)
    #: problems a user may mean (located like errors); ``validate`` prints them
    warnings: list[Problem] = field(default_factory=list)
    #: the nodes around the layers, stated once (None where the spec has none)
    dequantizer: DequantizerNode | None = None
    columns: ColumnsNode | None = None
    condition: ConditionNode | None = None
    top_prior: PriorNode | None = None
    #: the latents the layers factor out, in flow order
    latents: list[LatentNode] = field(default_factory=list)

    @property
    def nodes(self) -> list:
        """Every node that is built and costed, in the report's order: the dequantizer, the typed
        columns, the condition's embedding, the layers, the top prior."""
        around = [self.dequantizer, self.columns, self.condition]
        return [n for n in around if n is not None] + list(self.layers) + [self.top_prior]

    @property
    def invertible_runs(self) -> list[tuple[int, int, bool]]:
        """``(start, stop, factors_out)``: runs of layers between factoring ones (invertible
        backprop recomputes each run by inversion), and each factoring layer alone."""
        return invertible_runs([node.config.factors_out for node in self.layers])

    @property
    def input_shape(self) -> Shape:
        return tuple(self.spec.input.shape)

    @property
    def latent_shapes(self) -> list[Shape]:
        """Shapes of the latents in the order ``FlowModel.forward`` returns them (top last)."""
        return [latent.shape for latent in self.latents] + [self.output_shape]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape if self.layers else self.input_shape

    @property
    def context_shape(self) -> Shape | None:
        """``(E,)``: the condition's features every layer may see; None without ``condition:``."""
        return context_shape(self.spec)

    def context_of(self, node: "LayerNode") -> Shape | None:
        """The context shape ``node`` is built and costed with (its :attr:`LayerNode.context`)."""
        return node.context

    def problem(self, message: str, path: tuple, hint: str | None = None) -> Problem:
        source = self.spec.source
        if source is None:
            return Problem(message, path, hint=hint)
        return source.problem(message, path, hint)


def _hint_levels(spec: Spec, layer: ExpandedLayer, shape: Shape, violation: RuleViolation) -> str | None:
    if layer.path == ("levels",) and layer.config.spatial_factor > 1 and len(shape) == 3:
        fits, h, w = 0, spec.input.shape[1], spec.input.shape[2]
        while h % 2 == 0 and w % 2 == 0:
            fits, h, w = fits + 1, h // 2, w // 2
        return f"too many levels for a {spec.input.shape[1]}x{spec.input.shape[2]} input: at most {fits} fit"
    return violation.hint


def build_graph(spec):
    """The validated graph of a spec of any family (its family's ``build_graph``): a
    :class:`FlowGraph` for a flow spec. Raises :class:`ShapeError` listing every problem, each
    with its YAML location."""
    return family_of(spec).build_graph(spec)


def build_flow_graph(spec: Spec) -> FlowGraph:
    """Infer every shape, check every dimension and invertibility rule, build a flow's graph.

    Raises :class:`ShapeError` listing every problem, each with its YAML location.
    """
    expanded = expand(spec)
    graph = Digraph()
    graph.add_node(INPUT, kind="input", shape=tuple(spec.input.shape))
    flow = FlowGraph(spec, [], graph)
    problems: list[Problem] = []
    shape: Shape = tuple(spec.input.shape)
    previous = INPUT
    for index, layer in enumerate(expanded):
        config = layer.config
        factored = None
        try:
            config.check_input(shape)
            out_shape = tuple(config.output_shape(shape))
            if config.factors_out:
                factored = tuple(config.factored_shape(shape))
            produced = numel(out_shape) + (numel(factored) if factored else 0)
            if produced != numel(shape):
                raise RuleViolation(f"does not preserve the element count: {numel(shape)} in, "
                                    f"{produced} out")
        except RuleViolation as violation:
            problems.append(flow.problem(
                f"{layer.name} ({config.kind}) on input {shape}: {violation.message}",
                layer.path + violation.field, _hint_levels(spec, layer, shape, violation)))
            out_shape, factored = shape, None  # carry on to find the other problems
        node = LayerNode(index, layer.name, config, layer.path, shape, out_shape, factored,
                         layer.level, layer.step, layer_context(spec, config))
        flow.layers.append(node)
        graph.add_node(layer.name, kind=config.kind, node=node)
        graph.add_edge(previous, layer.name, shape=shape)
        if factored is not None:
            latent = LatentNode(f"{layer.name}.prior", layer.name, factored, config.prior)
            flow.latents.append(latent)
            graph.add_node(latent.name, kind="prior", prior=latent.prior, latent_node=latent)
            graph.add_edge(layer.name, latent.name, shape=factored, latent=True)
        previous, shape = layer.name, out_shape
    flow.top_prior = PriorNode(spec.prior, shape, top_prior_context(spec))
    graph.add_node(TOP_PRIOR, kind="prior", prior=spec.prior.kind, part=flow.top_prior)
    graph.add_edge(previous, TOP_PRIOR, shape=shape, latent=True)
    _add_side_nodes(flow)
    problems += _check_structure(flow)
    problems += _check_invertible_backprop(flow)
    if not problems:  # the mixing check walks shapes that must all be valid
        errors, flow.warnings = mixing_problems(flow.layers, tuple(spec.input.shape), flow.problem)
        problems += errors
    continuous = getattr(spec.input, "continuous", False)
    if not continuous:
        problems += dequantizer_problems(spec, tuple(spec.input.shape), flow.problem)
    if problems:
        raise ShapeError(problems)
    if not continuous:
        add_dequantizer_nodes(graph, spec, INPUT)  # cluster="dequantizer", after the flow's own checks
    add_condition_node(flow, TOP_PRIOR)  # after the structure checks: its edges are side inputs
    return flow


def _add_side_nodes(flow: FlowGraph) -> None:
    """The dequantizer (discrete data), the typed columns (a table's ``input.columns``) and the
    condition's embedding (``condition:``) as nodes of ``flow``."""
    spec = flow.spec
    shape = tuple(spec.input.shape)
    if not getattr(spec.input, "continuous", False):
        flow.dequantizer = DequantizerNode(spec.dequantization, shape, spec.input.levels)
    columns = getattr(spec.input, "columns", None)
    if columns:
        flow.columns = ColumnsNode(tuple(columns), shape)
    condition = getattr(spec, "condition", None)
    if condition is not None:
        flow.condition = ConditionNode(condition)


def _check_structure(flow: FlowGraph) -> list[Problem]:
    """Graph-level invertibility: acyclic, one input, each output consumed exactly once, every
    latent ends in a prior."""
    graph, problems = flow.graph, []
    if not graph.is_acyclic():
        problems.append(flow.problem("the layers form a cycle", ()))
    for name, data in graph.nodes(data=True):
        outs = graph.out_degree(name)
        node = data.get("node")
        expected = 0 if data["kind"] == "prior" else 2 if node and node.factored_shape else 1
        if outs != expected:
            path = node.path if node else ()
            problems.append(flow.problem(f"{name}: {outs} consumers of its outputs, expected "
                                         f"{expected} (every output is consumed exactly once)", path))
        if data["kind"] != "input" and graph.in_degree(name) != 1:
            problems.append(flow.problem(f"{name}: {graph.in_degree(name)} inputs, expected 1", ()))
    priors = {n for n, d in graph.nodes(data=True) if d["kind"] == "prior"}
    for name in graph.nodes:
        if graph.out_degree(name) == 0 and name not in priors:
            problems.append(flow.problem(f"{name}: its output reaches no prior", ()))
    return problems


def _check_invertible_backprop(flow: FlowGraph) -> list[Problem]:
    """Invertible backprop re-runs each layer in the backward pass: a layer whose training pass is
    random (dropout) would draw other masks there, and its gradients would be wrong."""
    memory = getattr(flow.spec, "memory", None)
    if not (memory and memory.invertible_backprop):
        return []
    problems = []
    for node in flow.layers:
        field = node.config.random_field()
        if field is not None:
            problems.append(flow.problem(
                f"{node.name} ({node.kind}): {'.'.join(field)} makes its training pass random, and invertible "
                f"backprop re-runs it in backward with other random draws, so its gradients would be wrong",
                node.path + field, "set it to 0, or memory: {invertible_backprop: false}"))
    return problems
