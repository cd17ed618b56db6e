"""Variational dequantization (Flow++, Ho et al. 2019, arXiv:1902.00275, sec. 3.1).

``u = h(eps; x) = sigmoid(g_K o ... o g_1(eps; c(x)))``, ``eps ~ N(0, I)``, where ``c(x)`` is a
context network over the integer data and each step ``g_k`` is actnorm -> invertible 1x1 conv
(LU; skipped for a single channel) -> affine coupling whose conditioner sees ``(eps_b, c(x))``
(an ordinary coupling layer given ``c(x)`` as its context):

coupling:  ``(t, r) = NN(eps_b, c(x))``,  ``log s = c_s tanh(r / c_s)``,
           ``eps_a' = s * eps_a + t``,  ``eps_b' = eps_b``,  log-det ``sum(log s)``
sigmoid:   ``u = sigmoid(z)``,  log-det ``sum(log sigmoid(z) + log sigmoid(-z))``
density:   ``log q(u|x) = log N(eps; 0, I) - log|det dh/deps|``

Images use a checkerboard mask (alternating parity), vectors split the features in halves. The
conditioners' last layers are zero-initialised, so every coupling starts as the identity. ``u`` is
clamped to the largest float below 1, and ``v = x + u`` to the largest float below ``x + 1``
(:func:`~flowspec.dequant.uniform.in_bin`), so ``v`` always lies in ``x``'s bin ``[x, x + 1)``.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import Tensor, nn

from flowspec.core.fields import ODD_KERNEL
from flowspec.dequant.base import CLUSTER, PATH, DequantizerConfig, register_dequantizer
from flowspec.dequant.uniform import in_bin
from flowspec.layers.actnorm import ActNormConfig
from flowspec.core.costs import LayerCost, Shape, numel
from flowspec.layers.conditioners import ChannelsLastNet, Conditioner, ConvConditioner, MLPConditioner, stack_cost
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.invconv import InvConvConfig
from flowspec.layers.transforms import AffineTransform, Transform


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite


class ContextConfig(StrictConfig):
    """The network that computes the context ``c(x)`` every coupling of the variational
    dequantizer sees: convs (``kernel``, padding keeps H x W) with ReLU for images, linear + ReLU
    for vectors; ``depth`` layers of width ``hidden``. ``kind`` defaults to the input's
    (``conv`` for images, ``mlp`` for vectors)."""

    kind: Optional[Literal["conv", "mlp"]] = None
    hidden: PositiveInt = 32
    depth: Annotated[int, Field(ge=1, le=16)] = 2
    kernel: Annotated[int, Field(ge=1, le=7), ODD_KERNEL] = 3



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


class DequantCoupling(StrictConfig):
    """``coupling:`` of the variational dequantizer: the transform and conditioner of every step's
    coupling in place of the default (affine with the ``exp`` scale clamped at 2, and a conv /
    MLP of width ``hidden``); Flow++'s is ``{transform: {kind: mixlogistic, components: 32},
    conditioner: {kind: gated, hidden: 96, blocks: 2}}``. The mask stays the dequantizer's."""

    transform: Transform = Field(default_factory=lambda: AffineTransform(scale="exp", clamp=2.0))
    conditioner: Optional[Conditioner] = None


@register_dequantizer
class VariationalDequantization(DequantizerConfig):
    """Flow++'s variational dequantizer: ``u = sigmoid(g(eps; c(x)))`` with ``g`` K conditional
    steps (actnorm -> invconv -> affine coupling whose conditioner sees ``c(x)``)."""

    kind: Literal["variational"] = "variational"
    steps: Annotated[int, Field(ge=1, le=32)] = 2
    hidden: PositiveInt = Field(32, description="width of each coupling's conditioner")
    context: ContextConfig = Field(default_factory=ContextConfig)
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

        Activations (what autograd saves, ``D = c HW`` entries): the context network's input and
        its ``depth`` ReLU outputs; per step what the actnorm, invconv and coupling kinds' own rules
        count at this shape (the coupling's with the context's channels); after the steps, the
        sigmoid's ``5 D`` (``log sigmoid`` of ``z`` and ``-z`` keep input and output, the sigmoid
        its output) and the bin clamp's ``2 D``. Once per call: ``exp(log s)`` of each actnorm
        (``c``), the LU factors of each invconv (``3 c^2 + c``), each checkerboard coupling's
        boolean mask (``HW`` bytes, counted in 4-byte elements) and one scalar (the clamp's bound).
        """
        image, c = len(shape) == 3, shape[0]
        spatial, n = numel(shape[1:]), numel(shape)
        ctx = self.context
        kernel = ctx.kernel if image else 1
        context = stack_cost([(c if d == 0 else ctx.hidden, ctx.hidden, kernel) for d in range(ctx.depth)], spatial)
        params, matmul = context.params, context.matmul_flops
        saved, call_saved = n + context.outputs, 1  # context input and ReLU outputs; the clamp's bound
        call, call_matmul = 0.0, 0.0
        for k in range(self.steps):
            params += 2 * c
            actnorm = ActNormConfig(data_init=False).cost(shape)
            saved, call_saved = saved + actnorm.activations, call_saved + c
            if c >= 2:
                invconv = InvConvConfig(lu=True).cost(shape)
                params, matmul = params + invconv.params, matmul + invconv.matmul_flops_forward
                call, call_matmul = call + invconv.call_flops_forward, call_matmul + invconv.call_matmul_flops_forward
                saved, call_saved = saved + invconv.activations, call_saved + 3 * c * c + c
            step = step_coupling(shape, self.hidden, k % 2, self.coupling).cost(shape, self.context_shape(shape))
            saved += step.activations
            call_saved += -(-spatial // 4) if image else 0  # the checkerboard mask: HW booleans
            if self.coupling is not None:
                params, matmul = params + step.params, matmul + step.matmul_flops_forward
                continue
            if image:
                net = ConvConditioner(hidden=self.hidden).cost(c + ctx.hidden, 2 * c, spatial)
            else:
                transformed = c // 2 if k % 2 == 0 else c - c // 2
                net = MLPConditioner(hidden=[self.hidden, self.hidden]).cost(c - transformed + ctx.hidden,
                                                                             2 * transformed)
            params, matmul = params + net.params, matmul + net.matmul_flops
        elementwise = 12.0 * n * self.steps
        return LayerCost(params=params, flops_forward=matmul + elementwise, matmul_flops_forward=matmul,
                         activations=saved + 7 * n, call_activations=call_saved, call_flops_forward=call,
                         call_matmul_flops_forward=call_matmul, ops=2 * ctx.depth + 45 * self.steps + 12)

    def build(self, shape: Shape, levels: int) -> "VariationalDequantizer":
        return VariationalDequantizer(self, tuple(shape), levels)




def context_network(config: VariationalDequantization, shape: Shape) -> nn.Module:
    ctx = config.context
    layers: list[nn.Module] = []
    width = shape[0]
    for _ in range(ctx.depth):
        if len(shape) == 3:
            layers += [nn.Conv2d(width, ctx.hidden, ctx.kernel, padding=ctx.kernel // 2), nn.ReLU()]
        else:
            layers += [nn.Linear(width, ctx.hidden), nn.ReLU()]
        width = ctx.hidden
    if len(shape) == 3:
        return ChannelsLastNet(*layers).to(memory_format=torch.channels_last)
    return nn.Sequential(*layers)


class VariationalDequantizer(nn.Module):
    """``forward(x) -> (v = x + u, log q(u|x))`` with ``u = h(eps; x)``, ``eps ~ N(0, I)``."""

    def __init__(self, config: VariationalDequantization, shape: Shape, levels: int):
        super().__init__()
        self.shape = tuple(shape)
        self.levels = levels
        self.context = context_network(config, self.shape)
        context = config.context_shape(self.shape)
        self.actnorms = nn.ModuleList()
        self.invconvs = nn.ModuleList()
        self.couplings = nn.ModuleList()
        for k in range(config.steps):
            self.actnorms.append(ActNormConfig(data_init=False).build(self.shape))
            if self.shape[0] >= 2:
                self.invconvs.append(InvConvConfig(lu=True, seed=k).build(self.shape))
            self.couplings.append(step_coupling(self.shape, config.hidden, k % 2, config.coupling).build(self.shape,
                                                                                             context))

    def context_of(self, x: Tensor) -> Tensor:
        """``c(x)`` of integer data, fed in as ``x / (n - 1) - 1/2``."""
        return self.context(x / (self.levels - 1) - 0.5)

    def transform(self, eps: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, log|det du/deps|)`` of ``u = h(eps; x)``."""
        context = self.context_of(x)
        z, logdet = eps, eps.new_zeros(eps.shape[0])
        for k, (actnorm, coupling) in enumerate(zip(self.actnorms, self.couplings)):
            z, step = actnorm(z)
            logdet = logdet + step
            if len(self.invconvs):
                z, step = self.invconvs[k](z)
                logdet = logdet + step
            z, step = coupling(z, context)
            logdet = logdet + step
        logdet = logdet + (F.logsigmoid(z) + F.logsigmoid(-z)).flatten(1).sum(1)
        below_one = torch.nextafter(torch.ones((), dtype=z.dtype, device=z.device),
                                    torch.zeros((), dtype=z.dtype, device=z.device))
        return torch.sigmoid(z).clamp(max=below_one), logdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        eps = torch.randn_like(x)
        u, logdet = self.transform(eps, x)
        log_normal = -0.5 * (eps * eps + math.log(2 * math.pi)).flatten(1).sum(1)
        return in_bin(x, u), log_normal - logdet
