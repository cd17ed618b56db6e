"""Spec models of ``dequantization:`` and ``preprocess:`` (re-exported by :mod:`flowspec.spec.models`).

* ``{kind: uniform}``: ``u ~ U[0,1)^D`` (Theis et al. 2016, arXiv:1511.01844).
* ``{kind: variational, steps: K, hidden: H, context: {...}}``: ``u = h(eps; x)``, ``eps ~ N(0, I)``,
  a conditional flow of K steps (actnorm -> invconv -> affine coupling that also sees a context
  computed from ``x``) ending in a sigmoid (Flow++, Ho et al. 2019, arXiv:1902.00275, sec. 3.1).
* ``preprocess: {kind: logit, alpha: a}``: ``y = logit(a + (1 - 2a) v / n)`` (RealNVP, Dinh et al.
  2017, arXiv:1605.08803, sec. 4.1); its log-det enters the bound like the scaling's ``-D log n``.

Each config also carries its dequantizer's cost rule, ``cost(shape) -> LayerCost`` (one
training-step pass), as layer configs do. Only shape-free checks live here; rules that need the
input's shape (a 1-feature vector, a conv context on vectors) are checked by
:func:`flowspec.dequant.graph.dequantizer_nodes`.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from flowspec.layers.base import LayerCost, Shape, numel
from flowspec.layers.conditioners import Conditioner, ConvConditioner, MLPConditioner, stack_cost
from flowspec.layers.transforms import AffineTransform, Transform
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.invconv import InvConvConfig


CLUSTER = "dequantizer"
PATH = ("dequantization",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite


class UniformDequantization(_Strict):
    """``y = (x + u) / n (- 1/2 when centred)``, ``u ~ U[0, 1)^D``."""

    kind: Literal["uniform"] = "uniform"
    centred: bool = True

    def graph_problems(self, shape: Shape, problem: Callable) -> list:
        return []

    def add_noise_nodes(self, graph, shape: Shape, data: str, out: str) -> None:
        """``u ~ U[0, 1)^D`` into the node ``out`` (``v = x + u`` in model space)."""
        noise = f"{CLUSTER}.uniform"
        graph.add_node(noise, kind="uniform noise", cluster=CLUSTER, formula="u ~ U[0, 1)^D", path=PATH)
        graph.add_edge(noise, out, shape=shape)

    def cost(self, shape: Shape) -> LayerCost:
        """One training-step pass (it does not run when sampling): a draw and an add per entry,
        ``2 D`` FLOPs, no parameters."""
        return LayerCost(flops_forward=2.0 * numel(shape), ops=6)  # rand, add, bin cap; to model space


class ContextConfig(_Strict):
    """The network that computes the context ``c(x)`` every coupling of the variational
    dequantizer sees: convs (``kernel``, padding keeps H x W) with ReLU for images, linear + ReLU
    for vectors; ``depth`` layers of width ``hidden``. ``kind`` defaults to the input's
    (``conv`` for images, ``mlp`` for vectors)."""

    kind: Optional[Literal["conv", "mlp"]] = None
    hidden: PositiveInt = 32
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    kernel: Annotated[int, Field(ge=1, le=7)] = 3

    @field_validator("kernel")
    @classmethod
    def _odd(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd so the context keeps the image's H x W, got {kernel}")
        return kernel


LOG_SCALE_CLAMP = 2.0


def step_coupling(shape: Shape, hidden: int, parity: int, coupling=None) -> CouplingConfig:
    """The coupling of step ``k`` (``parity = k % 2``): affine with the exp scale clamped at
    ``LOG_SCALE_CLAMP``, a checkerboard and a conv conditioner for images, a channel mask and an
    MLP for vectors (or the spec's ``coupling:`` transform and conditioner); its conditioner also
    sees the context ``c(x)``."""
    transform = coupling.transform if coupling is not None else AffineTransform(scale="exp", clamp=LOG_SCALE_CLAMP)
    image = len(shape) == 3
    conditioner = coupling.conditioner if coupling is not None and coupling.conditioner is not None else (
        ConvConditioner(hidden=hidden) if image else MLPConditioner(hidden=[hidden, hidden]))
    return CouplingConfig(transform=transform, mask="checkerboard" if image else "channel", parity=parity,
                          conditioner=conditioner)


class DequantCoupling(_Strict):
    """``coupling:`` of the variational dequantizer: the transform and conditioner of every step's
    coupling in place of the default (affine with the ``exp`` scale clamped at 2, and a conv /
    MLP of width ``hidden``); Flow++'s is ``{transform: {kind: mixlogistic, components: 32},
    conditioner: {kind: gated, hidden: 96, blocks: 2}}``. The mask stays the dequantizer's."""

    transform: Transform = Field(default_factory=lambda: AffineTransform(scale="exp", clamp=2.0))
    conditioner: Optional[Conditioner] = None


class VariationalDequantization(_Strict):
    """Flow++'s variational dequantizer: ``u = sigmoid(g(eps; c(x)))`` with ``g`` K conditional
    steps (actnorm -> invconv -> affine coupling whose conditioner sees ``c(x)``)."""

    kind: Literal["variational"] = "variational"
    steps: Annotated[int, Field(ge=1, le=32)] = 2
    hidden: PositiveInt = Field(32, description="width of each coupling's conditioner")
    context: ContextConfig = Field(default_factory=ContextConfig)
    centred: bool = True
    coupling: Optional[DequantCoupling] = Field(None, description="each step's transform and conditioner "
                                                                  "(default: affine and a conv / MLP of width hidden)")

    def context_kind(self, shape: Shape) -> str:
        """``conv`` for images, ``mlp`` for vectors, unless the spec says otherwise."""
        return self.context.kind or ("conv" if len(shape) == 3 else "mlp")

    def context_shape(self, shape: Shape) -> Shape:
        """Shape of ``c(x)``: ``(hidden, H, W)`` for images, ``(hidden,)`` for vectors."""
        return (self.context.hidden, *shape[1:]) if len(shape) == 3 else (self.context.hidden,)

    def graph_problems(self, shape: Shape, problem: Callable) -> list:
        """The context network must fit the input, and the couplings need two parts to divide."""
        problems = []
        image = len(shape) == 3
        kind = self.context_kind(shape)
        if image and kind == "mlp":
            problems.append(problem(f"an mlp context network works on vectors; this input is an image {shape}",
                                    PATH + ("context", "kind"), "use context: {kind: conv} or leave kind out"))
        if not image and kind == "conv":
            problems.append(problem(f"a conv context network needs an image input; this input is a vector {shape}",
                                    PATH + ("context", "kind"), "use context: {kind: mlp} or leave kind out"))
        conditioner = self.coupling.conditioner if self.coupling is not None else None
        if conditioner is not None and (conditioner.accepts == "image") != image:
            needs = "an image" if conditioner.accepts == "image" else "a vector"
            problems.append(problem(f"a {conditioner.kind} conditioner needs {needs} input; this input is {shape}",
                                    PATH + ("coupling", "conditioner", "kind")))
        if image and shape[1] * shape[2] < 2:
            problems.append(problem(f"variational dequantization couples with a checkerboard mask, which needs at "
                                    f"least 2 pixels; this input is {shape}", PATH + ("kind",),
                                    "use dequantization: {kind: uniform}"))
        if not image and shape[0] < 2:
            problems.append(problem(f"variational dequantization couples halves of the features, which needs at "
                                    f"least 2; this input is {shape}", PATH + ("kind",),
                                    "use dequantization: {kind: uniform}"))
        return problems

    def add_noise_nodes(self, graph, shape: Shape, data: str, out: str) -> None:
        """``eps ~ N(0, I)`` -> K steps (actnorm, invconv, coupling seeing ``c(x)``) -> sigmoid -> ``out``."""
        context, context_out = f"{CLUSTER}.context", self.context_shape(shape)
        graph.add_node(context, kind=f"{self.context_kind(shape)} context", cluster=CLUSTER,
                       hidden=self.context.hidden, depth=self.context.depth, path=PATH + ("context",))
        graph.add_edge(data, context, shape=shape)
        previous = f"{CLUSTER}.eps"
        graph.add_node(previous, kind="gaussian noise", cluster=CLUSTER, formula="eps ~ N(0, I)", path=PATH)
        for k in range(self.steps):
            names = [f"{CLUSTER}.step{k}.actnorm"]
            if shape[0] >= 2:
                names.append(f"{CLUSTER}.step{k}.invconv")
            names.append(f"{CLUSTER}.step{k}.coupling")
            for name in names:
                layer = name.rsplit(".", 1)[1]
                extra = {"mask": "checkerboard" if len(shape) == 3 else "channel", "parity": k % 2,
                         "hidden": self.hidden} if layer == "coupling" else {}
                graph.add_node(name, kind=layer, cluster=CLUSTER, step=k, path=PATH + ("steps",), **extra)
                graph.add_edge(previous, name, shape=shape)
                previous = name
            graph.add_edge(context, names[-1], shape=context_out, context=True)
        sigmoid = f"{CLUSTER}.sigmoid"
        graph.add_node(sigmoid, kind="sigmoid", cluster=CLUSTER, formula="u = sigmoid(z)", path=PATH)
        graph.add_edge(previous, sigmoid, shape=shape)
        graph.add_edge(sigmoid, out, shape=shape)

    def cost(self, shape: Shape) -> LayerCost:
        """One training-step pass of :class:`~flowspec.dequant.variational.VariationalDequantizer`
        on data of ``shape`` (``c`` channels / features, ``HW`` pixels; it does not run when sampling):

        * context ``c(x)``: ``depth`` convs (``kernel``) or linears of width ``hidden``;
        * per step: actnorm (``2c`` params), LU invconv (2 channels or more: ``2 c^2 + c`` params,
          ``2 c^2 HW`` FLOPs and ``4 c^3`` per call to build ``W``), and a coupling whose conditioner
          (``ConvConditioner(hidden=H)`` on ``c + context`` channels to ``2c``; for vectors
          ``MLPConditioner(hidden=[H, H])`` on the conditioning half + context to twice the other
          half) costs ``sum(i o k^2 + o)`` params and ``sum(2 i o k^2 HW)`` FLOPs;
        * about ``12 D`` elementwise FLOPs per step (actnorm, masking, scale, affine map, log-dets).
        """
        image, c = len(shape) == 3, shape[0]
        spatial, n = numel(shape[1:]), numel(shape)
        ctx = self.context
        kernel = ctx.kernel if image else 1
        context = stack_cost([(c if d == 0 else ctx.hidden, ctx.hidden, kernel) for d in range(ctx.depth)], spatial)
        params, matmul, hidden = context.params, context.matmul_flops, context.outputs
        call, call_matmul = 0.0, 0.0
        for k in range(self.steps):
            params += 2 * c
            if c >= 2:
                invconv = InvConvConfig(lu=True).cost(shape)
                params, matmul = params + invconv.params, matmul + invconv.matmul_flops_forward
                call, call_matmul = call + invconv.call_flops_forward, call_matmul + invconv.call_matmul_flops_forward
            if self.coupling is not None:
                step = step_coupling(shape, self.hidden, k % 2, self.coupling).cost(shape, self.context_shape(shape))
                params, matmul = params + step.params, matmul + step.matmul_flops_forward
                hidden += step.activations
                continue
            if image:
                net = ConvConditioner(hidden=self.hidden).cost(c + ctx.hidden, 2 * c, spatial)
            else:
                transformed = c // 2 if k % 2 == 0 else c - c // 2
                net = MLPConditioner(hidden=[self.hidden, self.hidden]).cost(c - transformed + ctx.hidden,
                                                                             2 * transformed)
            params, matmul, hidden = params + net.params, matmul + net.matmul_flops, hidden + net.outputs
        elementwise = 12.0 * n * self.steps
        return LayerCost(params=params, flops_forward=matmul + elementwise, matmul_flops_forward=matmul,
                         activations=hidden + 4 * n * self.steps, call_flops_forward=call,
                         call_matmul_flops_forward=call_matmul, ops=2 * ctx.depth + 45 * self.steps + 12)


Dequantization = Annotated[Union[UniformDequantization, VariationalDequantization], Field(discriminator="kind")]


class LogitPreprocess(_Strict):
    """``y = logit(alpha + (1 - 2 alpha) v / n)``, log-det
    ``sum(log(1 - 2 alpha) - log n - log p - log(1 - p))`` with ``p = alpha + (1 - 2 alpha) v / n``."""

    kind: Literal["logit"] = "logit"
    alpha: float = 0.05

    @field_validator("alpha")
    @classmethod
    def _inside(cls, alpha: float) -> float:
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5) so that alpha + (1 - 2 alpha) v / n stays in "
                             f"(0, 1), got {alpha}")
        return alpha


Preprocess = Annotated[Union[LogitPreprocess], Field(discriminator="kind")]
