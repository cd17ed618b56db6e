"""``--measure``: time the compiled model's layers (a VAE's parts), forward, one at a time at the
report's batch, and a whole training step (forward + backward of the mean bits/dim, the
dequantizer included), for comparison with the roofline."""

from __future__ import annotations

import torch

from flowspec.core.measure import best_time, measure_train_step  # noqa: F401  (measure_train_step: its old home)
from flowspec.report.costs import DEQUANTIZER, CostReport


def measure(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    """Fill ``measured_forward`` of every layer row (seconds, best of ``repeats``) and
    ``measured_train_step``. The model is initialised (actnorm) on a random batch first."""
    torch.manual_seed(seed)
    batch = report.batch
    continuous = getattr(model, "continuous", False)
    data = (torch.randn(batch, *model.input_shape) if continuous
            else torch.randint(0, model.levels, (batch, *model.input_shape)).float())
    condition = getattr(model, "condition_config", None)
    c = None if condition is None else condition.random(batch)  # conditional: random labels / contexts
    model.initialize(data, condition=c)
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
        model.loss_per_dim(data, condition=c).mean().backward()

    report.measured_train_step = best_time(step, repeats)
    return report
