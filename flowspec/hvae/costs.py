r"""Cost rules of a hierarchical VAE's parts, from its spec alone (no weights are allocated).

One ELBO pass (one posterior draw) is the report's "forward"; ancestral sampling (top-down prior,
decoder, most likely level) its "inverse". Every conv is weight-normalised: parameters
``i o k^2 + 2 o`` (``v``, ``g``, bias), ``2 i o k^2`` FLOPs per output pixel (FlopCounterMode's
count), and the normalised weight built once per call (``3 i o k^2``). With ``h`` hidden, ``z``
latent channels, ``n_l`` pixels of layer ``l``'s latent (``4 n_l`` before a downsampling layer):

* bottom-up: the stem ``C -> h`` (``k x k``, stride ``s``), then per layer a 3x3 conv ``h -> 2z +
  2h`` (stride 2 when it downsamples) and a 3x3 ``h -> h``; ELUs 3 FLOPs per entry, the residual
  add and scale 2;
* top-down: the learned top (``h`` parameters), per layer a 3x3 ``h -> 4z + 2h``, the posterior's
  draw and both Gaussian log-densities (about 20 FLOPs per latent entry), and the merge, a 3x3
  ``z + h -> h`` (transposed, stride 2, when the layer downsamples); sampling runs the convs and
  draws from the prior (4 FLOPs per latent entry) without the posterior;
* IAF: per layer the ``masked_conv`` conditioner's cost (:mod:`flowspec.layers.masked_conv`) at
  ``n_l`` pixels and the update (6 FLOPs per latent entry, log-det 1); not run when sampling;
* decoder: the stem's transpose ``h -> C P'`` (``P'`` the likelihood's parameters, less the shared
  log-scale, 1 more parameter); the likelihood: its kind's cost rule.

Training memory counts, per conv, its input and (before an ELU) the ELU's input, and per latent
layer the draw's intermediates: an estimate of what autograd keeps, not a count of it.
"""

from __future__ import annotations

from flowspec.core.costs import CostReport, Part, parts_report
from flowspec.hvae.graph import HVAEGraph, latent_layers, likelihood_params
from flowspec.layers.base import LayerCost, MatmulOp, numel
from flowspec.layers.masked_conv import MaskedConvConditioner
from flowspec.layers.weightnorm import conv_params

ELU_FLOPS = 3.0


class _Tally:
    """Sums of one part's convs and elementwise work."""

    def __init__(self):
        self.params, self.matmul, self.call, self.elementwise, self.activations, self.ops = 0, 0.0, 0.0, 0.0, 0, 0
        self.matmuls: list[MatmulOp] = []

    def conv(self, cin: int, cout: int, kernel: int, out_res: tuple[int, int], in_elements: int) -> None:
        pixels = numel(out_res)
        self.params += conv_params(cin, cout, kernel)
        self.matmul += 2.0 * cin * cout * kernel * kernel * pixels
        self.call += 3.0 * cin * cout * kernel * kernel
        self.activations += 2 * in_elements  # the conv's input and the ELU's before it
        self.elementwise += ELU_FLOPS * in_elements
        self.ops += 8  # elu, the weight norm's pow, sum, sqrt, div, mul, the conv, the split / cat
        self.matmuls.append(MatmulOp(cin, cout, kernel, tuple(out_res)))

    def cost(self, logdet: float = 0.0, inverse: tuple[float, float] | None = None) -> LayerCost:
        flops = self.matmul + self.elementwise
        inv_flops, inv_matmul = inverse if inverse is not None else (0.0, 0.0)
        return LayerCost(params=self.params, flops_forward=flops, matmul_flops_forward=self.matmul,
                         flops_inverse=inv_flops, matmul_flops_inverse=inv_matmul, flops_logdet=logdet,
                         call_flops_forward=self.call, call_flops_inverse=self.call if inverse is not None else 0.0,
                         activations=self.activations, ops=self.ops)


def hvae_parts(graph: HVAEGraph) -> list[Part]:
    """bottom-up, top-down, iaf (when the posterior has it), decoder, likelihood."""
    spec = graph.spec
    c, height, width = graph.input_shape
    h, z, stem = spec.hidden, spec.latent, spec.stem
    stem_res = (height // stem.stride, width // stem.stride)
    layers = latent_layers(spec)

    up = _Tally()
    up.conv(c, h, stem.kernel, stem_res, numel(graph.input_shape) // 2)  # no ELU before the stem: half
    res = stem_res
    for layer in layers:
        up.conv(h, 2 * z + 2 * h, 3, layer.resolution, h * numel(res))
        up.conv(h, h, 3, layer.resolution, h * numel(layer.resolution))
        up.elementwise += 2.0 * h * numel(layer.resolution)
        res = layer.resolution

    down = _Tally()
    down.params += h  # the learned top
    sample_extra = 0.0
    for layer in layers:
        pixels = numel(layer.resolution)
        merge_res = tuple(2 * r for r in layer.resolution) if layer.downsample else layer.resolution
        down.conv(h, 4 * z + 2 * h, 3, layer.resolution, h * pixels)
        down.conv(z + h, h, 3, merge_res, (z + h) * pixels)
        down.elementwise += 20.0 * z * pixels + 2.0 * h * numel(merge_res)
        down.activations += 6 * z * pixels
        down.ops += 14
        sample_extra += 4.0 * z * pixels + 2.0 * h * numel(merge_res)
    prior_sampling = down.matmul + sum(ELU_FLOPS * op.cin * numel(op.spatial) for op in down.matmuls) + sample_extra

    parts = [Part("bottom-up", "stem + up blocks", None, graph.input_shape, (h, *layers[-1].resolution),
                  up.cost(), tuple(up.matmuls), sampling=False),
             Part("top-down", "learned top + down blocks", None, (h, *layers[-1].resolution), (h, *stem_res),
                  down.cost(inverse=(prior_sampling, down.matmul)), tuple(down.matmuls))]
    if spec.iaf:
        ar = MaskedConvConditioner(hidden=spec.iaf_hidden, depth=spec.posterior.depth, kernel=spec.posterior.kernel)
        params = flops = matmul = call = logdet = 0.0
        activations = ops = 0
        matmuls: list[MatmulOp] = []
        for layer in layers:
            pixels = numel(layer.resolution)
            net = ar.cost(z, 2, h)
            params += net.params
            flops += pixels * (net.flops_forward + 6.0 * z)
            matmul += pixels * net.matmul_flops_forward
            call += net.call_flops_forward
            logdet += pixels * z
            activations += pixels * (net.activations + 4 * z)
            ops += net.ops + 8
            matmuls += [op._replace(spatial=tuple(layer.resolution)) for op in ar.matmul_ops(z, 2, h)]
        cost = LayerCost(params=int(params), flops_forward=flops, matmul_flops_forward=matmul, flops_logdet=logdet,
                         call_flops_forward=call, activations=activations, ops=ops)
        parts.append(Part("iaf", f"iaf (masked_conv) x {len(layers)}", None, graph.latent_shapes[0], graph.latent_shapes[0], cost, tuple(matmuls),
                          sampling=False))
    p_out = likelihood_params(spec)
    dec = _Tally()
    dec.conv(h, c * p_out, stem.kernel, (height, width), h * numel(stem_res))
    dec.params += 1 if spec.scale == "shared" else 0
    dec_cost = dec.cost(inverse=(dec.matmul + dec.elementwise, dec.matmul))
    params_per = spec.likelihood.params_per_entry(spec.input.levels)
    parts.append(Part("decoder", "transposed stem conv", None, (h, *stem_res), graph.input_shape + (params_per,),
                      dec_cost, tuple(dec.matmuls)))
    parts.append(Part("likelihood", spec.likelihood.kind, None, graph.input_shape + (params_per,), graph.input_shape,
                      spec.likelihood.cost(graph.input_shape, spec.input.levels)))
    return parts


def hvae_cost_report(graph: HVAEGraph, device, batch: int = 64, dtype: str = "float32") -> CostReport:
    """The cost report of a hierarchical VAE spec (:func:`hvae_parts` as rows)."""
    latents = sum(numel(shape) for shape in graph.latent_shapes)
    report = parts_report(graph.spec.name or "hvae", hvae_parts(graph), device, batch, dtype, latents=latents)
    report.notes.append("forward: one ELBO pass (one posterior draw); inverse: ancestral sampling from the "
                        "top-down prior; training memory is an estimate")
    return report
