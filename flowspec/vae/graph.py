"""``build_vae_graph``: VAESpec -> VAEGraph, the encoder / posterior / decoder as graph nodes.

Pure: shapes come from the rules below, no weight is allocated. Each part is a :class:`VAENode`
stated once (its row name, label, shapes, cluster, spec path, whether sampling runs it); the
report (:func:`flowspec.vae.costs.vae_parts`: one cost rule per node's role), the build table, the
model's IAF steps and the diagram are passes over :attr:`VAEGraph.nodes`. Drawn nodes carry
``cluster=`` (``encoder``, ``posterior``, ``decoder``, ``prior``) so a renderer can box them;
edges carry ``shape``. Every problem is reported at once, each with the YAML line of its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from flowspec.errors import Problem, ShapeError
from flowspec.digraph import Digraph
from flowspec.core.costs import Shape, numel
from flowspec.vae.config import VAESpec


def encoder_kind(spec: VAESpec) -> str:
    return spec.encoder.network_kind(spec.input.shape)


def decoder_kind(spec: VAESpec) -> str:
    return spec.decoder.network_kind(spec.input.shape)


def conv_resolutions(height: int, width: int, depth: int) -> list[tuple[int, int, int]]:
    """Per conv layer of the encoder: ``(stride, H_out, W_out)``. A layer halves the resolution
    (stride 2) while both sides are even and at least 4, else keeps it (stride 1)."""
    out = []
    for _ in range(depth):
        stride = 2 if height % 2 == 0 and width % 2 == 0 and min(height, width) >= 4 else 1
        height, width = height // stride, width // stride
        out.append((stride, height, width))
    return out


def likelihood_params(spec: VAESpec) -> int:
    """Decoder outputs per data element: 1 (Bernoulli logit), 2 (logistic mean and log-scale),
    ``levels`` (categorical logits)."""
    return spec.likelihood.params_per_entry(spec.input.levels)


@dataclass(frozen=True)
class VAENode:
    """One part of a VAE: ``name`` (its row and drawn node), ``kind`` (its row's label), ``role``
    (which cost rule of :mod:`flowspec.vae.costs` prices it: ``encoder``, ``posterior``, ``iaf``,
    ``decoder``, ``likelihood``, ``prior``), shapes, the drawn node's ``drawn`` kind, ``cluster``
    and ``path`` into the spec; ``sampling`` False for the parts a sampling pass skips (the
    encoder and the posterior); ``reverse`` for an IAF step that runs in reversed order."""

    name: str
    kind: str
    role: str
    in_shape: Shape
    out_shape: Shape
    drawn: str
    cluster: str
    path: tuple
    sampling: bool = True
    reverse: bool = False
    formula: str | None = None
    level: int | None = None

    def attributes(self) -> dict:
        """The drawn node's attributes."""
        out = {"kind": self.drawn, "cluster": self.cluster, "path": self.path, "part": self}
        if self.formula is not None:
            out["formula"] = self.formula
        return out


@dataclass
class VAEGraph:
    """The validated graph of a VAE spec: :attr:`nodes` in the report's order (encoder, posterior
    sample, IAF steps, decoder, likelihood, prior); ``graph`` draws them, its edges carry ``shape``."""

    spec: VAESpec
    graph: Digraph = field(repr=False)
    nodes: list[VAENode] = field(default_factory=list)

    @property
    def iaf_steps(self) -> list[VAENode]:
        return [node for node in self.nodes if node.role == "iaf"]

    @property
    def input_shape(self) -> Shape:
        return tuple(self.spec.input.shape)

    @property
    def latent_shape(self) -> Shape:
        return (self.spec.latent,)

    @property
    def latent_shapes(self) -> list[Shape]:
        """As :attr:`FlowGraph.latent_shapes`: the one latent z_K."""
        return [self.latent_shape]

    @property
    def layers(self) -> list[str]:
        """The nodes from the input to the likelihood, in order (encoder, z0, iaf.k, decoder, ...)."""
        return [n for n in self.graph.topological_order() if n not in ("input", "prior")]

    def problem(self, message: str, path: tuple, hint: str | None = None) -> Problem:
        source = self.spec.source
        return Problem(message, path, hint=hint) if source is None else source.problem(message, path, hint)


def _check(spec: VAESpec, vae: VAEGraph) -> list[Problem]:
    problems = []
    shape, latent = tuple(spec.input.shape), spec.latent
    for part in ("encoder", "decoder"):
        wrong = getattr(spec, part).shape_problem(part, shape)
        if wrong is not None:
            problems.append(vae.problem(wrong[0], (part, "kind"), wrong[1]))
    for message, hint in spec.likelihood.problems(spec.input.levels):
        problems.append(vae.problem(message, ("likelihood",), hint))
    if spec.iaf_steps and latent < 2:
        problems.append(vae.problem(
            "an IAF needs a latent of size 2 or more (with 1, MADE has nothing to condition on)",
            ("posterior", "steps"), "set latent >= 2 or posterior.steps: 0"))
    if spec.iaf_steps and spec.posterior.hidden < latent - 1:
        problems.append(vae.problem(
            f"MADE hidden width {spec.posterior.hidden} is less than latent - 1 = {latent - 1}: "
            f"some latent dimensions would see none of the earlier ones", ("posterior", "hidden"),
            f"hidden >= {latent - 1}"))
    if latent > numel(shape) * 4:
        problems.append(vae.problem(
            f"latent {latent} is much larger than the input's {numel(shape)} elements", ("latent",),
            "a latent at most the input size"))
    return problems


def vae_nodes(spec: VAESpec) -> list[VAENode]:
    """The parts of a VAE in the report's order, each stated once."""
    x_shape, z_shape = tuple(spec.input.shape), (spec.latent,)
    latent, head_out = spec.latent, 2 * spec.latent + spec.encoder.context
    encoder = f"{encoder_kind(spec)} encoder"
    nodes = [VAENode("encoder", encoder, "encoder", x_shape, (head_out,), encoder, "encoder", ("encoder",),
                     sampling=False),
             VAENode("z0", "gaussian sample", "posterior", (2 * latent,), z_shape, "gaussian sample", "posterior",
                     ("posterior",), sampling=False, formula="z_0 = mu + sigma * eps")]
    for k in range(spec.iaf_steps):
        reverse = k % 2 == 1
        nodes.append(VAENode(f"iaf.{k}", "iaf" + (" (reversed)" if reverse else ""), "iaf", z_shape, z_shape, "iaf",
                             "posterior", ("posterior",), sampling=False, reverse=reverse,
                             formula="z' = sigmoid(s) * z + (1 - sigmoid(s)) * m"))
    decoder = f"{decoder_kind(spec)} decoder"
    params = x_shape + (likelihood_params(spec),)
    nodes += [VAENode("decoder", decoder, "decoder", z_shape, params, decoder, "decoder", ("decoder",)),
              VAENode("likelihood", f"likelihood ({spec.likelihood.kind})", "likelihood", params, x_shape,
                      spec.likelihood.kind, "decoder", ("likelihood",)),
              VAENode("prior", f"prior ({spec.prior})", "prior", z_shape, z_shape, "prior", "prior", ("prior",))]
    return nodes


def build_vae_graph(spec: VAESpec) -> VAEGraph:
    """Encoder -> z_0 -> IAF steps -> z_K -> decoder -> p(x|z), with the prior on z_K.

    Raises :class:`ShapeError` listing every problem with its YAML location.
    """
    graph = Digraph()
    vae = VAEGraph(spec, graph)
    problems = _check(spec, vae)
    if problems:
        raise ShapeError(problems)
    vae.nodes = vae_nodes(spec)
    part = {node.name: node for node in vae.nodes}
    x_shape, z_shape = tuple(spec.input.shape), (spec.latent,)
    context = spec.encoder.context
    graph.add_node("input", kind="input", shape=x_shape)
    graph.add_node("encoder", **part["encoder"].attributes())
    graph.add_edge("input", "encoder", shape=x_shape)
    graph.add_node("z0", **part["z0"].attributes())
    graph.add_edge("encoder", "z0", shape=z_shape, label="mu, sigma")
    previous = "z0"
    for node in vae.iaf_steps:
        graph.add_node(node.name, **node.attributes(), order="reversed" if node.reverse else "natural")
        graph.add_edge(previous, node.name, shape=z_shape)
        if context:
            graph.add_edge("encoder", node.name, shape=(context,), label="h", context=True)
        previous = node.name
    graph.add_node("prior", **part["prior"].attributes(), prior=spec.prior)
    graph.add_edge(previous, "prior", shape=z_shape, latent=True)
    graph.add_node("decoder", **part["decoder"].attributes())
    graph.add_edge(previous, "decoder", shape=z_shape)
    graph.add_node("likelihood", **part["likelihood"].attributes())
    graph.add_edge("decoder", "likelihood", shape=part["likelihood"].in_shape)
    return vae


def explicit_vae_spec(spec: VAESpec) -> dict:
    """The spec with every field written out, the networks' kinds resolved (what ``flowspec
    expand`` prints). Loading it back gives the same model."""
    data = spec.model_dump(mode="json")
    data["encoder"]["kind"] = encoder_kind(spec)
    data["decoder"]["kind"] = decoder_kind(spec)
    return data
