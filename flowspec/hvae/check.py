"""``flowspec check`` on a hierarchical VAE: exactness of every layer's IAF step (Kingma et al. 2016,
arXiv:1606.04934) on a narrow float64 copy.

The copy keeps each layer's IAF configuration (depth, kernel, whether the context adds directly)
with at most ``max_latent`` latent channels, widths at most ``width`` and the latent map cropped to
at most ``max_side`` x ``max_side`` pixels (a masked conv's weights do not depend on the map's size,
and with a 3x3 kernel every relative position of the mask already appears at 3x3); every
parameter is perturbed away from its init. For each layer's step, at random ``z`` and context, it
measures the round trip ``max|f^{-1}(f(z)) - z|`` (the inverse is ``C H W`` sequential passes),
the log-det error against ``slogdet`` of the autograd Jacobian, ``max|logdet_inv + logdet|``, and
the autoregressive property: the Jacobian of the conditioner's outputs with respect to ``z``,
permuted into the degree order, must be strictly lower triangular.
"""

from __future__ import annotations

import torch

from flowspec.core.check import CheckResult
from flowspec.hvae.graph import build_hvae_graph, latent_layers
from flowspec.hvae.networks import ConvIAFStep


def narrow_hvae_spec(spec, width: int = 8, max_latent: int = 3):
    """The spec with at most ``max_latent`` latent channels and widths at most ``width``."""
    latent = min(spec.latent, max_latent)
    hidden = max(min(spec.hidden, width), latent)
    iaf_hidden = hidden if spec.iaf_hidden == spec.hidden else max(min(spec.iaf_hidden, width), latent) + 1
    posterior = spec.posterior.model_copy(update={"hidden": iaf_hidden})
    return spec.model_copy(update={"latent": latent, "hidden": hidden, "posterior": posterior})


def check_hvae(spec, width: int = 8, batch: int = 2, tolerance: float = 1e-6, seed: int = 0, guard=None,
               max_side: int = 3) -> CheckResult:
    """``guard(graph, batch=, jacobian=)``, when given, sees the narrow copy's graph first."""
    torch.manual_seed(seed)
    narrow = narrow_hvae_spec(spec, width)
    shapes = [(narrow.latent, min(layer.resolution[0], max_side), min(layer.resolution[1], max_side))
              for layer in latent_layers(narrow)]
    jacobian = max(c * h * w for c, h, w in shapes)
    graph = build_hvae_graph(narrow)
    if guard is not None:
        guard(graph, batch=batch, jacobian=jacobian)
    if not narrow.iaf:
        return CheckResult(input_shape=shapes[0], roundtrip_error=0.0, logdet_error=0.0, inverse_logdet_error=0.0,
                           tolerance=tolerance, triangular_error=0.0, checked="diagonal posterior (no IAF step)")
    roundtrip = logdet_error = inverse_error = triangular = 0.0
    for shape in shapes:
        step = ConvIAFStep(shape[0], shape[1:], narrow.hidden, narrow.iaf_hidden, narrow.posterior.depth,
                           narrow.posterior.kernel).double().eval()
        with torch.no_grad():
            for parameter in step.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
        z = torch.randn(batch, *shape, dtype=torch.float64)
        context = torch.randn(batch, narrow.hidden, *shape[1:], dtype=torch.float64)
        with torch.no_grad():
            y, logdet = step(z, context)
            z_back, inverse_logdet = step.inverse(y, context)
        roundtrip = max(roundtrip, (z_back - z).abs().max().item())
        inverse_error = max(inverse_error, (inverse_logdet + logdet).abs().max().item())
        order = torch.argsort(step.conditioner.degrees.flatten())
        for i in range(batch):
            c_i = context[i:i + 1]
            full = torch.autograd.functional.jacobian(lambda v: step(v.view(1, *shape), c_i)[0].flatten(), z[i].flatten())
            reference = torch.linalg.slogdet(full)[1]
            logdet_error = max(logdet_error, ((logdet[i] - reference).abs() / (1 + reference.abs())).item())
            outputs = torch.autograd.functional.jacobian(
                lambda v: step.conditioner(v.view(1, *shape), c_i).flatten(1), z[i].flatten())
            for out in outputs.view(2, -1, order.numel()):  # each output (mean, log-scale) over z
                triangular = max(triangular, torch.triu(out[order][:, order]).abs().max().item())
    return CheckResult(input_shape=shapes[0], roundtrip_error=roundtrip, logdet_error=logdet_error,
                       inverse_logdet_error=inverse_error, tolerance=tolerance, triangular_error=triangular,
                       checked=f"IAF steps of {len(shapes)} latent layers")
