r"""Cost rules of a VAE's parts, from its spec alone (no weights are allocated).

One ELBO pass (:meth:`~flowspec.vae.model.VAEModel.elbo`, one draw) is the report's "forward";
a sampling pass (:meth:`~flowspec.vae.model.VAEModel.sample`: ``z ~ N(0, I)``, decoder, most
likely level) is its "inverse". Per example, with ``D`` data entries, ``L`` the latent size,
``P`` likelihood parameters per entry and a multiply-add counted as 2 FLOPs (biases and
activation functions apart, as torch's FlopCounterMode counts convs and matmuls only):

* encoder (Kingma & Welling 2014, arXiv:1312.6114): convs ``3x3`` (stride 2 while the side is
  even and >= 4) or linears, ``sum(2 i o k^2 HW_out)``, then a linear head to ``2L + context``;
  elementwise ``2 D`` (scaling to [-1, 1]) + ``3`` per ELU output + ``5 L`` (softplus + 1e-4).
* posterior sample: ``z_0 = mu + sigma eps``, ``log N(eps)`` (``7 L``); log-det ``sum(log sigma)``
  (``2 L``).
* IAF step (Kingma et al. 2016, arXiv:1606.04934; MADE, Germain et al. 2015, arXiv:1502.03509)
  of MADE width ``H``, depth ``d`` and context ``c``: matmul ``2 (L H + (d-1) H^2 + 2 L H + c H +
  2 c L)``; the masks ``W * M`` cost ``L H + (d-1) H^2 + 2 L H`` once per call; elementwise
  ``3 d H`` (ELU) + ``H + 2 L`` (context adds) + ``8 L`` (gate and update); log-det
  ``sum(log sigmoid(s))`` ``4 L``. A masked weight is a full parameter: its masked-out entries
  stay zero in use but are counted, as ``VAEModel.parameters()`` holds them.
* decoder: a linear stem to ``hidden x h x w`` then, mirroring the encoder, nearest x2
  upsampling + ``3x3`` conv per halving and a last ``3x3`` conv to ``C P`` (conv), or linears to
  ``D P`` (mlp); it runs in both passes.
* likelihood ``log p(x|z)``: its kind's cost rule (:mod:`flowspec.vae.likelihoods`; about 6
  FLOPs per entry for Bernoulli, 30 for the discretised logistic, ``4 P`` for categorical);
  sampling takes the most likely level (1, 4, ``P`` per entry).
* prior ``log N(z_K; 0, I)`` ``4 L``; sampling draws and scales ``z``, ``2 L``.

Training memory (elements a training step keeps for backward, per example): each part lists
what autograd saves (inputs of convs / linears, ELU inputs, the likelihood's intermediates); an
IAF step also keeps its masked weights ``W * M`` once per call. The test suite checks the sum
against ``torch.autograd.graph.saved_tensors_hooks`` on the compiled model.

The conv / linear shapes are also listed (:class:`~flowspec.report.rates.MatmulOp`, a strided
conv at its output resolution) so that ``--device cpu`` times them at their own shapes.
"""

from __future__ import annotations

from flowspec.core.costs import LayerCost, MatmulOp, numel
from flowspec.layers.conditioners import NetCost, stack_cost
from flowspec.core.costs import CostReport, Part, parts_report
from flowspec.vae.graph import VAEGraph, VAENode, conv_resolutions, likelihood_params

ELU_FLOPS = 3.0  # x > 0 ? x : exp(x) - 1: a compare, an exp, a subtraction
def _add(a: NetCost, b: NetCost) -> NetCost:
    return NetCost(a.params + b.params, a.matmul_flops + b.matmul_flops, a.outputs + b.outputs, a.layers + b.layers)


def _convs(shapes: list[tuple[int, int, tuple[int, int]]]) -> tuple[NetCost, list[MatmulOp]]:
    """Cost and ops of 3x3 convs ``(in, out, (H_out, W_out))``, each at its own resolution."""
    total = NetCost(0, 0.0, 0, 0)
    for i, o, hw in shapes:
        total = _add(total, stack_cost([(i, o, 3)], numel(hw)))
    return total, [MatmulOp(i, o, 3, hw) for i, o, hw in shapes]


def _linears(shapes: list[tuple[int, int]]) -> tuple[NetCost, list[MatmulOp]]:
    return stack_cost([(i, o, 1) for i, o in shapes]), [MatmulOp(i, o, 1, ()) for i, o in shapes]


Rule = tuple[LayerCost, list[MatmulOp], int]  # a node's cost, its conv / linear ops, its call activations


def encoder_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """``x -> (mu, sigma, h)``: the convs / linears of :class:`~flowspec.vae.networks.Encoder`."""
    spec, shape = graph.spec, graph.input_shape
    cfg, latent = spec.encoder, spec.latent
    head_out = 2 * latent + cfg.context
    if cfg.convolutional(shape):
        channels, shapes = shape[0], []
        height, width = shape[1], shape[2]
        for _, height, width in conv_resolutions(shape[1], shape[2], cfg.depth):
            shapes.append((channels, cfg.hidden, (height, width)))
            channels = cfg.hidden
        body, ops = _convs(shapes)
        features = channels * height * width
    else:
        sizes = [numel(shape)] + [cfg.hidden] * cfg.depth
        body, ops = _linears(list(zip(sizes[:-1], sizes[1:])))
        features = sizes[-1]
    head, head_ops = _linears([(features, head_out)])
    net = _add(body, head)
    n = numel(shape)
    elementwise = 2.0 * n + ELU_FLOPS * body.outputs + 5.0 * latent
    cost = LayerCost(params=net.params, flops_forward=net.matmul_flops + elementwise,
                     matmul_flops_forward=net.matmul_flops,
                     # the scaled input, each layer's output and its ELU, the head (softplus' input)
                     activations=n + 2 * body.outputs + head_out,
                     ops=2 + 2 * body.layers + 4)  # scale (mul, sub); conv/linear + ELU; head, split, softplus, add
    return cost, ops + head_ops, 0


def posterior_sample_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """``z_0 = mu + sigma eps``, ``log q(z_0|x) = log N(eps; 0, I) - sum(log sigma)``."""
    latent = graph.spec.latent
    cost = LayerCost(flops_forward=7.0 * latent, flops_logdet=2.0 * latent, activations=2 * latent, ops=11)  # eps, sigma
    return cost, [], 0


def iaf_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """One :class:`~flowspec.vae.iaf.IAFStep`: MADE (masked linears, the context's two linears),
    gate and update, ``sum(log sigmoid(s))``."""
    spec = graph.spec
    latent, post, context = spec.latent, spec.posterior, spec.encoder.context
    hidden, depth = post.hidden, post.depth
    masked = [(latent, hidden)] + [(hidden, hidden)] * (depth - 1) + [(hidden, 2 * latent)]
    net, ops = _linears(masked)
    params, matmul = net.params, net.matmul_flops
    mask_entries = sum(i * o for i, o in masked)
    if context:
        ctx, ctx_ops = _linears([(context, hidden)])
        params, matmul, ops = params + ctx.params, matmul + ctx.matmul_flops, ops + ctx_ops
        params += context * 2 * latent  # context_out: a linear without bias
        matmul += 2.0 * context * 2 * latent
        ops.append(MatmulOp(context, 2 * latent, 1, ()))
    elementwise = ELU_FLOPS * depth * hidden + (hidden + 2 * latent if context else 0) + 8.0 * latent
    cost = LayerCost(params=params, flops_forward=matmul + elementwise, matmul_flops_forward=matmul,
                     flops_logdet=4.0 * latent,
                     call_flops_forward=float(mask_entries),  # W * M per masked linear
                     # each hidden layer before and after its ELU; z, MADE's output (2L), the gate,
                     # 1 - gate and the sums' buffers: 6L (h is the encoder's output, counted there)
                     activations=6 * latent + 2 * depth * hidden,
                     ops=3 * depth + 2 + (4 if context else 0) + 10)
    return cost, ops, mask_entries  # autograd keeps each W * M once per call


def decoder_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """``z -> parameters of p(x|z)``: :class:`~flowspec.vae.networks.Decoder`; runs in both passes."""
    spec, shape = graph.spec, graph.input_shape
    cfg, latent, params_per = spec.decoder, spec.latent, likelihood_params(spec)
    if cfg.convolutional(shape):
        resolutions = conv_resolutions(shape[1], shape[2], cfg.depth)
        _, height, width = resolutions[-1]
        stem, ops = _linears([(latent, cfg.hidden * height * width)])
        convs = [(cfg.hidden, cfg.hidden, (h * stride, w * stride)) for stride, h, w in reversed(resolutions)]
        hidden, conv_ops = _convs(convs)
        last, last_ops = _convs([(cfg.hidden, shape[0] * params_per, tuple(shape[1:]))])
        net = _add(_add(stem, hidden), last)
        ops = ops + conv_ops + last_ops
        activated = stem.outputs + hidden.outputs  # ELU after the stem and after every hidden conv
        # z, the stem's output, each hidden conv's input and output, the last conv's input
        saved = latent + stem.outputs + 2 * hidden.outputs + cfg.hidden * numel(shape[1:])
        dispatched = 2 + sum(1 for s, _, _ in resolutions if s == 2) + 2 * len(convs) + 3  # + last conv, view, permute
    else:
        sizes = [latent] + [cfg.hidden] * cfg.depth + [numel(shape) * params_per]
        net, ops = _linears(list(zip(sizes[:-1], sizes[1:])))
        activated, dispatched = net.outputs - sizes[-1], 2 * cfg.depth + 2
        saved = latent + 2 * activated  # each linear's input, each ELU's input
    elementwise = ELU_FLOPS * activated
    cost = LayerCost(params=net.params, flops_forward=net.matmul_flops + elementwise,
                     flops_inverse=net.matmul_flops + elementwise, matmul_flops_forward=net.matmul_flops,
                     matmul_flops_inverse=net.matmul_flops,
                     activations=saved, ops=dispatched)
    return cost, ops, 0


def likelihood_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """``log p(x|z)`` summed over the entries; sampling: the most likely level per entry."""
    spec = graph.spec
    return spec.likelihood.cost(tuple(graph.input_shape), spec.input.levels), [], 0


def prior_cost(graph: VAEGraph, node: VAENode) -> Rule:
    """``log N(z_K; 0, I)`` and ``w = log p(x|z) + log p(z) - log q(z|x)``; sampling draws ``z``."""
    latent = graph.spec.latent
    # it keeps z_K, which the decoder keeps too: no activations of its own
    cost = LayerCost(flops_forward=4.0 * latent, flops_inverse=2.0 * latent, ops=6)
    return cost, [], 0


#: the cost rule of each role of :class:`~flowspec.vae.graph.VAENode`
RULES = {"encoder": encoder_cost, "posterior": posterior_sample_cost, "iaf": iaf_cost, "decoder": decoder_cost,
         "likelihood": likelihood_cost, "prior": prior_cost}


def vae_parts(graph: VAEGraph) -> list[Part]:
    """The report's rows of a VAE, one per node of the graph (encoder, posterior sample, IAF steps,
    decoder, likelihood, prior): the node's name, label, shapes and sampling flag, priced by its
    role's rule."""
    parts = []
    for node in graph.nodes:
        cost, ops, call_activations = RULES[node.role](graph, node)
        parts.append(Part(node.name, node.kind, node.level, node.in_shape, node.out_shape, cost, tuple(ops),
                          sampling=node.sampling, call_activations=call_activations))
    return parts


def count_vae_params(graph: VAEGraph) -> int:
    """Parameters of the compiled :class:`~flowspec.vae.model.VAEModel`."""
    return sum(part.cost.params for part in vae_parts(graph))


def vae_cost_report(graph, device, batch: int = 64, dtype: str = "float32") -> CostReport:
    """The :class:`CostReport` of a VAE's graph (:class:`~flowspec.vae.graph.VAEGraph`): its parts'
    rules live in :mod:`flowspec.vae.costs`; "forward" is one ELBO pass, "inverse" a sampling pass."""
    report = parts_report(graph.spec.name or "spec", vae_parts(graph), device, batch, dtype,
                          latents=numel(graph.latent_shape))
    report.notes.insert(0, "model: vae: forward is one ELBO pass (encoder, one posterior draw, IAF steps, "
                           "decoder, log p(x|z), log p(z)); inverse is a sampling pass (z ~ N(0, I), "
                           "decoder, most likely level), which skips the encoder and posterior")
    return report
