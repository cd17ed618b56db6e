"""Batch normalisation as a bijector (RealNVP, arXiv:1605.08803): exact round trip and log-det in
training (given the batch's statistics) and in evaluation (the running averages)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from flowspec.compile.invertible_backprop import invertible_run
from flowspec.layers.batchnorm import BatchNormConfig

SHAPE = (3, 4, 4)


def _layer(momentum=0.1):
    torch.manual_seed(0)
    layer = BatchNormConfig(momentum=momentum).build(SHAPE).double()
    with torch.no_grad():
        layer.log_gamma.normal_(0, 0.3)
        layer.beta.normal_(0, 0.3)
    return layer


def test_training_uses_the_batch_statistics_and_round_trips_with_them():
    layer = _layer().train()
    x = 2.0 * torch.randn(8, *SHAPE, dtype=torch.float64) + 1.0
    y, logdet = layer(x)
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    expected = 16 * (layer.log_gamma.flatten() - 0.5 * torch.log(var + layer.eps)).sum()
    torch.testing.assert_close(logdet, expected.expand(8), rtol=1e-12, atol=1e-12)
    normalised = (y - layer.beta) * torch.exp(-layer.log_gamma)  # zero mean, unit variance per channel
    torch.testing.assert_close(normalised.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    x_back, inverse_logdet = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-12, atol=1e-12)
    # running averages moved by momentum towards the batch's statistics
    torch.testing.assert_close(layer.running_mean.flatten(), 0.1 * mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.running_var.flatten(), 0.9 + 0.1 * var, rtol=1e-12, atol=1e-12)


def test_training_logdet_is_the_jacobian_with_the_statistics_held_fixed():
    layer = _layer().train()
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    _, logdet = layer(x)
    mean, var = (s.clone() for s in layer._last)
    for i in range(4):
        def fixed_stats(v):
            return ((v.view(1, *SHAPE) - mean) * torch.rsqrt(var + layer.eps) * torch.exp(layer.log_gamma)
                    + layer.beta).flatten()
        jacobian = torch.autograd.functional.jacobian(fixed_stats, x[i].flatten())
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jacobian)[1], rtol=1e-10, atol=1e-10)


def test_evaluation_uses_the_running_averages():
    layer = _layer().train()
    for _ in range(3):
        layer(torch.randn(16, *SHAPE, dtype=torch.float64) * 3 + 2)
    layer.eval()
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    y, logdet = layer(x)
    expected = (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * torch.exp(layer.log_gamma) + layer.beta
    torch.testing.assert_close(y, expected)
    x_back, inverse_logdet = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inverse_logdet, -logdet)


def test_invertible_backprop_in_training_matches_autograd_and_updates_once():
    x = torch.randn(6, *SHAPE, dtype=torch.float64)
    grads, running = [], []
    for invertible in (False, True):
        layer = _layer().train()
        xi = x.clone().requires_grad_(True)
        y, logdet = invertible_run([layer], xi, None) if invertible else layer(xi)
        ((y ** 2).sum() + logdet.sum()).backward()
        grads.append([xi.grad, layer.log_gamma.grad, layer.beta.grad])
        running.append(layer.running_mean.clone())
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(running[0], running[1], rtol=0, atol=0)


@pytest.mark.parametrize("momentum", [0.0, 1.0, -0.5, 1.5])
def test_momentum_outside_the_open_unit_interval_is_rejected(momentum):
    with pytest.raises(ValidationError, match="momentum must be in"):
        BatchNormConfig(momentum=momentum)


TINY_REALNVP = """\
input: {shape: [1, 8, 8], levels: 17}
prior: standard
memory: {invertible_backprop: INVERTIBLE}
layers:
  - {kind: coupling, mask: checkerboard, parity: 0, scale: exp, clamp: 2.0, conditioner: {kind: resnet, hidden: 8, blocks: 2, norm: batch}}
  - {kind: batchnorm}
  - {kind: squeeze}
  - {kind: coupling, mask: channel, parity: 0, scale: exp, clamp: 2.0, conditioner: {kind: resnet, hidden: 8, blocks: 2, norm: batch}}
  - {kind: batchnorm}
  - {kind: coupling, mask: channel, parity: 1, scale: exp, clamp: 2.0, conditioner: {kind: resnet, hidden: 8, blocks: 1, norm: batch}}
"""


def test_invertible_backprop_on_and_off_train_to_the_same_model():
    """The same 6 training steps of a RealNVP-like model (batch norm in the conditioners and as
    layers) with ``memory.invertible_backprop`` on and off: every buffer and the evaluation-mode log
    p agree in float64 (the recomputation passes do not update the running averages again)."""
    from flowspec import compile, loads_spec

    x = torch.randint(0, 17, (16, 1, 8, 8)).double()
    trained = []
    for invertible in ("false", "true"):
        torch.manual_seed(0)
        model = compile(loads_spec(TINY_REALNVP.replace("INVERTIBLE", invertible))).double().train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(6):
            torch.manual_seed(10 + step)  # the same dequantization noise in both runs
            optimizer.zero_grad()
            model.bits_per_dim(x).mean().backward()
            optimizer.step()
        trained.append(model.eval())
    plain, recomputed = trained
    buffers = dict(plain.named_buffers())
    assert any("net" in name and "running_mean" in name for name in buffers)  # a conditioner's batch norm
    for name, value in recomputed.named_buffers():
        torch.testing.assert_close(value, buffers[name], rtol=1e-10, atol=1e-10, msg=name)
    torch.manual_seed(99)
    y = (x + torch.rand_like(x)) / 17
    with torch.no_grad():
        torch.testing.assert_close(recomputed.log_prob(y), plain.log_prob(y), rtol=1e-10, atol=1e-10)
