"""``--measure``: time the compiled model's layers (a VAE's parts), forward, one at a time at the
report's batch, and a whole training step (forward + backward of the mean bits/dim, the
dequantizer included), for comparison with the roofline."""

from __future__ import annotations

import torch

from flowspec.report.costs import DEQUANTIZER, CostReport
from flowspec.report.rates import best_time


def _measure_train_step(report: CostReport, model, data, repeats: int) -> CostReport:
    """``measured_train_step``: forward + backward of the mean bits/dim of ``data``, best of ``repeats``."""
    def step():
        model.zero_grad(set_to_none=True)
        model.bits_per_dim(data).mean().backward()

    report.measured_train_step = best_time(step, repeats)
    return report


def measure(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    """Fill ``measured_forward`` of every layer row (seconds, best of ``repeats``) and
    ``measured_train_step``. The model is initialised (actnorm) on a random batch first."""
    from flowspec.compile.condition import random_condition

    torch.manual_seed(seed)
    batch = report.batch
    continuous = getattr(model, "continuous", False)
    data = (torch.randn(batch, *model.input_shape) if continuous
            else torch.randint(0, model.levels, (batch, *model.input_shape)).float())
    c = random_condition(getattr(model, "condition_config", None), batch)
    model.initialize(data, c)
    model.train()
    rows = {row.name: row for row in report.rows}
    with torch.no_grad():
        if DEQUANTIZER in rows:
            rows[DEQUANTIZER].measured_forward = best_time(lambda: model.dequantizer(data), repeats)
        context = model.features(c, batch, data)
        if "condition" in rows:
            rows["condition"].measured_forward = best_time(lambda: model.features(c, batch, data), repeats)
        h = data if continuous else model.to_model_space(model.dequantizer(data)[0])[0]
        for name, layer in zip(model.names, model.layers):
            rows[name].measured_forward = best_time(lambda: layer.encode(h, context), repeats)
            h = layer.encode(h, context)[0]
        rows["prior"].measured_forward = best_time(lambda: model.top_prior.log_prob(h, context), repeats)

    def step():
        model.zero_grad(set_to_none=True)
        model.loss_per_dim(data, c).mean().backward()

    report.measured_train_step = best_time(step, repeats)
    return report


def measure_vae(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    """:func:`measure` for a :class:`~flowspec.vae.model.VAEModel`: each row of
    :func:`flowspec.vae.costs.vae_parts` timed alone on the outputs of the parts before it."""
    from flowspec.vae import likelihoods
    from flowspec.vae.model import standard_normal_log_prob

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

    return _measure_train_step(report, model, data, repeats)
