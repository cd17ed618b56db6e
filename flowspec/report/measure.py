"""``--measure``: time the compiled model's layers (a VAE's parts), forward, one at a time at the
report's batch, and a whole training step (forward + backward of the mean bits/dim, the
dequantizer included), for comparison with the roofline."""

from __future__ import annotations

import torch

from flowspec.report.costs import DEQUANTIZER, CostReport
from flowspec.report.rates import best_time


def measure_train_step(report: CostReport, model, data, repeats: int) -> CostReport:
    """``measured_train_step``: forward + backward of the mean bits/dim of ``data``, best of ``repeats``."""
    def step():
        model.zero_grad(set_to_none=True)
        model.bits_per_dim(data).mean().backward()

    report.measured_train_step = best_time(step, repeats)
    return report


def measure(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    """Fill ``measured_forward`` of every layer row (seconds, best of ``repeats``) and
    ``measured_train_step``. The model is initialised (actnorm) on a random batch first."""
    torch.manual_seed(seed)
    batch = report.batch
    data = torch.randint(0, model.levels, (batch, *model.input_shape)).float()
    model.initialize(data)
    model.train()
    rows = {row.name: row for row in report.rows}
    with torch.no_grad():
        if DEQUANTIZER in rows:
            rows[DEQUANTIZER].measured_forward = best_time(lambda: model.dequantizer(data), repeats)
        h = model.to_model_space(model.dequantizer(data)[0])[0]
        for name, layer in zip(model.names, model.layers):
            rows[name].measured_forward = best_time(lambda: layer.encode(h), repeats)
            h = layer.encode(h)[0]
        rows["prior"].measured_forward = best_time(lambda: model.top_prior.log_prob(h), repeats)

    return measure_train_step(report, model, data, repeats)
