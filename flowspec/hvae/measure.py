"""``flowspec report --measure`` on a hierarchical VAE: each part timed alone (the bottom-up pass,
the IAF steps, the top-down pass (a posterior pass less the others), the decoder, the likelihood)
and one training step."""

from __future__ import annotations

import torch

from flowspec.core.costs import CostReport
from flowspec.core.measure import best_time, measure_train_step


def measure_hvae(report: CostReport, model, repeats: int = 3, seed: int = 0) -> CostReport:
    torch.manual_seed(seed)
    data = torch.randint(0, model.levels, (report.batch, *model.input_shape)).float()
    model.train()
    rows = {row.name: row for row in report.rows}
    with torch.no_grad():
        rows["bottom-up"].measured_forward = best_time(lambda: model.bottom_up(data), repeats)
        up = model.bottom_up(data)
        whole = best_time(lambda: model.posterior_pass(data, up=up), repeats)
        h = model.top.new_zeros(report.batch, model.spec.hidden, *data.shape[2:])
        stem = model.spec.stem.stride
        h = h[:, :, ::stem, ::stem]
        rows["decoder"].measured_forward = best_time(lambda: model.decode_params(h), repeats)
        params = model.decode_params(h)
        rows["likelihood"].measured_forward = best_time(
            lambda: model.likelihood.log_prob(params, data, model.levels), repeats)
        # the top-down pass and its IAF steps share one timing: the pass less the decoder and likelihood
        rest = whole - rows["decoder"].measured_forward - rows["likelihood"].measured_forward
        if "iaf" in rows:  # each step alone on a draw and a context of its layer's shape
            steps = 0.0
            for block, shape in zip(model.down, model.latent_shapes):
                z = torch.randn(report.batch, *shape)
                context = torch.randn(report.batch, model.spec.hidden, *shape[1:])
                steps += best_time(lambda: block.iaf(z, context), repeats)
            rows["iaf"].measured_forward = steps
            rest -= steps
        rows["top-down"].measured_forward = max(rest, 0.0)
    return measure_train_step(report, model, data, repeats)
