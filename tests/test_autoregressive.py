"""One autoregressive contract (flowspec/layers/autoregressive.py): every registered autoregressive
conditioner is autoregressive in its order (strictly triangular Jacobian); the layer's Jacobian
is triangular in the order with the log-det on its diagonal; ``maf`` is the layer; the VAE's IAF
step is the same layer run the other way (``.inv``), one pass to sample, ``D`` to evaluate."""

from __future__ import annotations

import pytest
import torch

from flowspec.layers.autoregressive import AR_CONDITIONER_KINDS, AutoregressiveLayer, Inverted
from flowspec.layers.maf import MAFConfig
from flowspec.vae.iaf import Gate, IAFStep

D, CONTEXT = 5, 3


def _jacobian(function, x):
    return torch.autograd.functional.jacobian(function, x)


@pytest.mark.parametrize("kind", sorted(AR_CONDITIONER_KINDS))
def test_every_conditioner_is_strictly_triangular_in_its_order(kind):
    torch.manual_seed(0)
    degrees = torch.randperm(D) + 1
    net = AR_CONDITIONER_KINDS[kind]().build(D, 2, CONTEXT, degrees).double()
    assert torch.equal(net.degrees, degrees)
    x, h = torch.randn(D, dtype=torch.float64), torch.randn(1, CONTEXT, dtype=torch.float64)
    jacobian = _jacobian(lambda v: net(v.view(1, D), h)[0], x)  # (outputs, D out, D in)
    order = torch.argsort(degrees)
    in_order = jacobian[:, order][:, :, order]
    for head in in_order:
        assert torch.count_nonzero(torch.triu(head)) == 0, "an output reads its own or a later variable"
        assert torch.count_nonzero(torch.tril(head, -1)) > 0
    params = AR_CONDITIONER_KINDS[kind]().cost(D, 2, CONTEXT).params
    assert params == sum(p.numel() for p in net.parameters())


def test_the_layer_jacobian_is_triangular_with_the_logdet_on_its_diagonal():
    torch.manual_seed(1)
    layer = MAFConfig(hidden=8, order="random", seed=2).build((D,), (CONTEXT,)).double()
    assert isinstance(layer, AutoregressiveLayer)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x, h = torch.randn(1, D, dtype=torch.float64), torch.randn(1, CONTEXT, dtype=torch.float64)
    jacobian = _jacobian(lambda v: layer(v.view(1, D), h)[0][0], x[0])
    order = torch.argsort(layer.conditioner.degrees)
    in_order = jacobian[order][:, order]
    assert torch.count_nonzero(torch.triu(in_order, 1)) == 0
    torch.testing.assert_close(layer(x, h)[1][0], in_order.diagonal().abs().log().sum())


def test_the_iaf_step_is_the_autoregressive_layer_run_the_other_way():
    torch.manual_seed(2)
    step = IAFStep(D, 8, depth=2, context=CONTEXT, reverse=True).double()
    with torch.no_grad():
        for parameter in step.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    layer = AutoregressiveLayer(step.made, Gate())  # the same conditioner, read in the density direction
    assert isinstance(step.flow, Inverted) and step.flow.inv is step.flow.layer
    z, h = torch.randn(4, D, dtype=torch.float64), torch.randn(4, CONTEXT, dtype=torch.float64)
    # the posterior's step (the IAF's sampling direction) is the layer's forward: one pass
    for got, want in zip(step(z, h), layer(z, h)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # the IAF flow's forward (towards the noise) is the layer's inverse
    for got, want in zip(step.flow(z, h), layer.inverse(z, h)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    back, logdet = step.inverse(*step(z, h)[:1], h)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(logdet, -step(z, h)[1])
    calls = []
    step.made.register_forward_hook(lambda *args: calls.append(1))
    step(z, h)
    assert len(calls) == 1
    step.inverse(z, h)
    assert len(calls) == 1 + D


def test_older_state_dicts_load():
    """Modules saved before the contract named the conditioner ``made``."""
    step = IAFStep(D, 8, context=CONTEXT)
    old = {key.replace("flow.layer.conditioner.", "made."): value for key, value in step.state_dict().items()}
    fresh = IAFStep(D, 8, context=CONTEXT, gate_bias=0.5)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.made.out.bias, step.made.out.bias)
    layer = MAFConfig(hidden=8).build((D,))
    old = {key.replace("conditioner.", "made."): value for key, value in layer.state_dict().items()}
    MAFConfig(hidden=8).build((D,)).load_state_dict(old)
