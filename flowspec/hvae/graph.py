"""``build_hvae_graph``: HVAESpec -> HVAEGraph, the bottom-up and top-down ladder as graph nodes.

Pure: shapes come from the rules below, no weight is allocated. Per latent layer ``l`` (bottom
first) the graph has ``up.l`` (bottom-up block), ``down.l`` (top-down block: the prior's parameters
and the posterior's deltas), ``z.l`` (the posterior's Gaussian draw, bottom-up parameters added),
``iaf.l`` (its IAF step, unless ``posterior.kind: diagonal``) and ``merge.l`` (``z`` and the
deterministic features back into the residual stream). Nodes carry ``cluster=`` (``bottom-up``,
``top-down``, ``posterior``, ``decoder``) so a renderer boxes them, and edges carry ``shape``.
Every problem is reported at once, each with the YAML line of its field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowspec.digraph import Digraph
from flowspec.errors import Problem, ShapeError
from flowspec.layers.base import Shape
from flowspec.hvae.config import HVAESpec


@dataclass(frozen=True)
class LatentLayer:
    """One latent layer: its index (bottom first), whether its up block halves the resolution
    (and its merge doubles it back), and the resolution of its latent ``(H_l, W_l)``."""

    index: int
    downsample: bool
    resolution: tuple[int, int]


def latent_layers(spec: HVAESpec) -> list[LatentLayer]:
    """The layers bottom first: level ``i`` holds ``blocks[i]`` layers, the first of a level
    ``i > 0`` downsamples (openai/iaf's ``downsample = i > 0 and j == 0``)."""
    _, height, width = spec.input.shape
    height, width = height // spec.stem.stride, width // spec.stem.stride
    layers = []
    for level, count in enumerate(spec.blocks):
        for block in range(count):
            down = level > 0 and block == 0
            if down:
                height, width = height // 2, width // 2
            layers.append(LatentLayer(len(layers), down, (height, width)))
    return layers


def likelihood_params(spec: HVAESpec) -> int:
    """Decoder outputs per data element: the likelihood's ``P``, less the logistic's log-scale
    when it is one shared number."""
    params = spec.likelihood.params_per_entry(spec.input.levels)
    return params - 1 if spec.scale == "shared" else params


@dataclass
class HVAEGraph:
    """The validated graph of a hierarchical VAE spec; ``graph`` edges carry ``shape``."""

    spec: HVAESpec
    graph: Digraph = field(repr=False)

    @property
    def input_shape(self) -> Shape:
        return tuple(self.spec.input.shape)

    @property
    def layers(self) -> list[LatentLayer]:
        return latent_layers(self.spec)

    @property
    def latent_shapes(self) -> list[Shape]:
        """Each latent layer's ``(latent, H_l, W_l)``, bottom first (the top last)."""
        return [(self.spec.latent, *layer.resolution) for layer in self.layers]

    def problem(self, message: str, path: tuple, hint: str | None = None) -> Problem:
        source = self.spec.source
        return Problem(message, path, hint=hint) if source is None else source.problem(message, path, hint)


def _check(spec: HVAESpec, hvae: HVAEGraph) -> list[Problem]:
    problems = []
    channels, height, width = spec.input.shape
    factor = spec.stem.stride * 2 ** (len(spec.blocks) - 1)
    if height % factor or width % factor:
        where = ("blocks",) if len(spec.blocks) > 1 else ("stem", "stride")
        problems.append(hvae.problem(
            f"the input's {height}x{width} does not divide by {factor} (the stem's stride {spec.stem.stride} "
            f"times 2 per later entry of blocks)", where, "fewer entries in blocks or a smaller stem stride"))
    for message, hint in spec.likelihood.problems(spec.input.levels):
        problems.append(hvae.problem(message, ("likelihood",), hint))
    if spec.scale == "shared" and not spec.likelihood.shareable_log_scale:
        problems.append(hvae.problem(
            f"scale: shared is the discretised logistic's one learned log-scale; {spec.likelihood.kind} has none",
            ("scale",) if "scale" in spec.model_fields_set else ("likelihood",), "scale: per_entry"))
    if spec.iaf and spec.iaf_hidden < spec.latent:
        problems.append(hvae.problem(
            f"IAF hidden channels {spec.iaf_hidden} are fewer than latent {spec.latent}: some latent channels "
            f"would see none of the earlier ones", ("posterior", "hidden"), f"hidden >= {spec.latent}"))
    return problems


def build_hvae_graph(spec: HVAESpec) -> HVAEGraph:
    """stem -> up.0 .. up.L-1 -> top -> (down.l, z.l, iaf.l, merge.l) for l = L-1 .. 0 -> decoder.

    Raises :class:`ShapeError` listing every problem with its YAML location.
    """
    graph = Digraph()
    hvae = HVAEGraph(spec, graph)
    problems = _check(spec, hvae)
    if problems:
        raise ShapeError(problems)
    x_shape, h, z = tuple(spec.input.shape), spec.hidden, spec.latent
    layers = latent_layers(spec)
    stem_res = (x_shape[1] // spec.stem.stride, x_shape[2] // spec.stem.stride)
    graph.add_node("input", kind="input", shape=x_shape)
    graph.add_node("stem", kind="stem conv", cluster="bottom-up", path=("stem",))
    graph.add_edge("input", "stem", shape=x_shape)
    previous, resolution = "stem", stem_res
    for layer in layers:
        name = f"up.{layer.index}"
        graph.add_node(name, kind="up block (stride 2)" if layer.downsample else "up block", cluster="bottom-up",
                       path=("blocks",), formula="h <- h + s * conv(elu(conv(elu(h))))")
        graph.add_edge(previous, name, shape=(h, *resolution))
        previous, resolution = name, layer.resolution
    graph.add_node("top", kind="learned top", cluster="top-down", path=("hidden",))
    graph.add_edge(previous, "top", shape=(h, *resolution), label="shape only")
    previous = "top"
    for layer in reversed(layers):
        l, map_shape = layer.index, layer.resolution
        down, sample, merge = f"down.{l}", f"z.{l}", f"merge.{l}"
        graph.add_node(down, kind="down block", cluster="top-down", path=("blocks",),
                       formula="prior mean, log sd; posterior deltas; context; h_det")
        graph.add_edge(previous, down, shape=(h, *map_shape))
        graph.add_node(sample, kind="gaussian sample", cluster="posterior", path=("posterior",),
                       formula="z = (mu_p + mu_q) + exp(logsd_p + logsd_q) * eps")
        graph.add_edge(down, sample, shape=(2 * z, *map_shape), label="prior, deltas")
        graph.add_edge(f"up.{l}", sample, shape=(2 * z, *map_shape), label="bottom-up", skip=True)
        last = sample
        if spec.iaf:
            graph.add_node(f"iaf.{l}", kind="iaf (masked conv)", cluster="posterior", path=("posterior",),
                           formula="z <- (z - m(z, c)) / exp(s(z, c))")
            graph.add_edge(sample, f"iaf.{l}", shape=(z, *map_shape))
            graph.add_edge(down, f"iaf.{l}", shape=(h, *map_shape), label="context", context=True)
            last = f"iaf.{l}"
        graph.add_node(merge, kind="merge (stride 2)" if layer.downsample else "merge", cluster="top-down",
                       path=("blocks",), formula="h <- up(h) + s * conv(elu([z, h_det]))")
        graph.add_edge(last, merge, shape=(z, *map_shape), latent=True)
        graph.add_edge(down, merge, shape=(h, *map_shape), label="h_det")
        previous = merge
    graph.add_node("decoder", kind="transposed stem conv", cluster="decoder", path=("stem",))
    graph.add_edge(previous, "decoder", shape=(h, *stem_res))
    graph.add_node("likelihood", kind=spec.likelihood.kind, cluster="decoder", path=("likelihood",))
    graph.add_edge("decoder", "likelihood", shape=x_shape + (spec.likelihood.params_per_entry(spec.input.levels),))
    return hvae


def explicit_hvae_spec(spec: HVAESpec) -> dict:
    """The spec with every field written out, the IAF's width resolved (what ``flowspec expand``
    prints). Loading it back gives the same model."""
    data = spec.model_dump(mode="json")
    data["posterior"]["hidden"] = spec.iaf_hidden
    return data
