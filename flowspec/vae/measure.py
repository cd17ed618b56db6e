"""``flowspec report --measure`` on a VAE: each part of :func:`flowspec.vae.costs.vae_parts` timed
alone on the outputs of the parts before it, and one training step."""

from __future__ import annotations

import torch

from flowspec.core.costs import CostReport
from flowspec.core.measure import best_time, measure_train_step
from flowspec.vae import likelihoods
from flowspec.vae.model import standard_normal_log_prob


def measure_vae(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    """:func:`measure` for a :class:`~flowspec.vae.model.VAEModel`: each row of
    :func:`flowspec.vae.costs.vae_parts` timed alone on the outputs of the parts before it."""
    torch.manual_seed(seed)
    data = torch.randint(0, model.levels, (report.batch, *model.input_shape)).float()
    model.train()
    rows = {row.name: row for row in report.rows}
    with torch.no_grad():
        rows["encoder"].measured_forward = best_time(lambda: model.encoder(data), repeats)
        mu, sigma, h = model.encoder(data)
        eps = torch.randn_like(mu)
        rows["z0"].measured_forward = best_time(  # as VAEModel.posterior before its IAF steps
            lambda: (mu + sigma * eps, standard_normal_log_prob(eps) - torch.log(sigma).sum(-1)), repeats)
        z = mu + sigma * eps
        for k, step in enumerate(model.iaf):
            rows[f"iaf.{k}"].measured_forward = best_time(lambda: step(z, h), repeats)
            z, _ = step(z, h)
        rows["decoder"].measured_forward = best_time(lambda: model.decoder(z), repeats)
        params = model.decoder(z)
        rows["likelihood"].measured_forward = best_time(
            lambda: likelihoods.log_prob(model.likelihood, params, data, model.levels), repeats)
        rows["prior"].measured_forward = best_time(lambda: standard_normal_log_prob(z), repeats)

    return measure_train_step(report, model, data, repeats)
