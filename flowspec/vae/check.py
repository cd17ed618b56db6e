"""``flowspec check`` on a VAE: exactness of its IAF posterior (Kingma et al. 2016,
arXiv:1606.04934) on a narrow float64 copy.

The copy keeps the spec's latent size (at most ``max_latent``), IAF steps and depth, with MADE
widths at most ``width``; every parameter is perturbed away from its init. For each IAF step, at
random ``z`` and encoder context ``h``, it measures: the round trip ``max|f^{-1}(f(z)) - z|``
(the inverse is D sequential passes), the log-det error against ``slogdet`` of the autograd
Jacobian, ``max|logdet_inv + logdet|``, and MADE's autoregressive property: the Jacobian of its
outputs with respect to ``z``, permuted into the step's variable order, must be strictly lower
triangular (``triangular_error`` is the largest entry on or above the diagonal).
"""

from __future__ import annotations

import torch

from flowspec.core.check import CheckResult
from flowspec.vae.graph import build_vae_graph
from flowspec.vae.model import VAEModel


def narrow_vae_spec(spec, width: int = 8, max_latent: int = 8):
    """The spec with MADE widths at most ``width`` and a latent of at most ``max_latent``."""
    posterior = spec.posterior.model_copy(update={"hidden": min(spec.posterior.hidden, width)})
    return spec.model_copy(update={"posterior": posterior, "latent": min(spec.latent, max_latent)})


def check_vae(spec, width: int = 8, batch: int = 2, tolerance: float = 1e-6, seed: int = 0,
              guard=None) -> CheckResult:
    """``guard(graph, batch=, jacobian=)``, when given, sees the narrow copy's graph first."""
    torch.manual_seed(seed)
    narrow = narrow_vae_spec(spec, width)
    if guard is not None:
        guard(build_vae_graph(narrow), batch=batch, jacobian=narrow.latent)
    model = VAEModel(build_vae_graph(narrow)).double().eval()
    with torch.no_grad():
        for parameter in model.iaf.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    d, context = narrow.latent, narrow.encoder.context
    roundtrip = logdet_error = inverse_error = triangular = 0.0
    for step in model.iaf:
        z = torch.randn(batch, d, dtype=torch.float64)
        h = torch.randn(batch, context, dtype=torch.float64) if context else None
        with torch.no_grad():
            y, logdet = step(z, h)
            z_back, inverse_logdet = step.inverse(y, h)
        roundtrip = max(roundtrip, (z_back - z).abs().max().item())
        inverse_error = max(inverse_error, (inverse_logdet + logdet).abs().max().item())
        order = torch.argsort(step.made.degrees)
        for i in range(batch):
            h_i = None if h is None else h[i:i + 1]
            jacobian = torch.autograd.functional.jacobian(lambda v: step(v.view(1, d), h_i)[0].flatten(), z[i])
            reference = torch.linalg.slogdet(jacobian)[1]
            logdet_error = max(logdet_error, ((logdet[i] - reference).abs() / (1 + reference.abs())).item())
            made = torch.autograd.functional.jacobian(lambda v: step.made(v.view(1, d), h_i).flatten(1), z[i])
            for out in made.view(-1, d, d):  # each MADE output (mean, gate) over z
                ordered = out[order][:, order]
                triangular = max(triangular, torch.triu(ordered).abs().max().item())
    return CheckResult(input_shape=(d,), roundtrip_error=roundtrip, logdet_error=logdet_error,
                       inverse_logdet_error=inverse_error, tolerance=tolerance, triangular_error=triangular,
                       checked="IAF posterior")
