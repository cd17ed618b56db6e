"""The contract of every registered kind of the registries beside layers (which
tests/test_layer_contract.py runs, transforms and conditioners within couplings, the example
plugin package's transform included): top priors, conditions, dequantizers, likelihoods. Each
kind is enumerated from its registry, so a kind registered later (or by a package) is covered at
once. float64 throughout.

* prior: cost rule's parameters = the module's; ``log_prob`` is the density of what ``generate``
  draws (change of variables in 1-D: ``log p(g(eps)) + log|g'(eps)| = log N(eps)`` at T = 1);
  ``eps = 0`` is the median at any temperature; a conditionable prior reads its context.
* condition: cost rule's parameters and matmul FLOPs = the embedding's; random conditions pass the
  kind's own check; one condition repeats over a batch; gradients reach every parameter.
* dequantizer: cost rule's parameters = the module's; ``v`` in ``x``'s bin; ``log q`` per example;
  the saved elements a training pass keeps = the rule's (per example and per call).
* likelihood: normalised over the levels entry by entry; mode and draws are levels.
* autoregressive conditioner: output ``i`` reads input ``j`` only for ``degrees[j] < degrees[i]``
  (the autograd Jacobian's zeros, in a random order); cost rule's parameters and matmul FLOPs = the
  module's (FlopCounterMode); the context reaches the outputs; gradients reach every parameter.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from flowspec.bench.memory import saved_activation_bytes
from flowspec.conditions import CONDITION_KINDS
from flowspec.dequant.base import DEQUANTIZER_KINDS
from flowspec.errors import Problem
from flowspec.layers.autoregressive import AR_CONDITIONER_KINDS
from flowspec.layers.kinds import UNIONS
from flowspec.priors import PRIOR_KINDS
from flowspec.vae.likelihoods import LIKELIHOOD_KINDS

IMAGE, VECTOR, LINE = (2, 4, 4), (6,), (1,)
CONDITION_EXAMPLES = {"class": {"classes": 5, "embed": 3}, "vector": {"dim": 4, "hidden": [5, 3]}}


def _defaults(registry, examples=None):
    """Every kind of a registry at its defaults (or the fields a kind requires, from ``examples``)."""
    return [pytest.param(registry[kind](**(examples or {}).get(kind, {})), id=kind) for kind in sorted(registry)]


def test_every_registry_is_contract_tested():
    # column: tests/test_columns.py's contract enumerates COLUMN_KINDS (and checks it covers every kind)
    covered = {"transform", "conditioner", "prior", "condition", "dequantization", "likelihood", "column"}
    assert set(UNIONS) <= covered, f"add a contract for {sorted(set(UNIONS) - covered)}"


# -- top priors --------------------------------------------------------------------------------
def _perturbed(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return module


@pytest.mark.parametrize("config", _defaults(PRIOR_KINDS))
@pytest.mark.parametrize("context", [0, 3])
def test_prior_contract(config, context):
    if context and not config.conditionable:
        with pytest.raises(ValueError, match="no mean and scale"):
            config.build(LINE, context)
        return
    torch.manual_seed(0)
    c = torch.randn(5, context, dtype=torch.float64) if context else None
    for shape in (IMAGE, VECTOR):
        module = _perturbed(config.build(shape, context).double())
        assert config.cost(shape, context).params == sum(p.numel() for p in module.parameters())
        z = torch.randn(5, *shape, dtype=torch.float64)
        assert module.log_prob(z, c).shape == (5,)
        if context and list(module.parameters()):
            assert not torch.allclose(module.log_prob(z, c), module.log_prob(z, c + 1.0))
    module = _perturbed(config.build(LINE, context).double())
    # (not at 0 exactly: autograd differentiates sign(eps) |.| there as 0, though the map is smooth)
    eps = torch.linspace(-3, 3, 12, dtype=torch.float64).view(-1, 1).requires_grad_(True)
    c = torch.randn(1, context, dtype=torch.float64).expand(12, -1) if context else None
    z = module.generate(eps, 1.0, c)
    slope, = torch.autograd.grad(z.sum(), eps, create_graph=True, allow_unused=True)
    if slope is None:  # a mixture (mog) draws its component: z is no map of eps to differentiate
        return
    normal = -0.5 * eps.squeeze(1) ** 2 - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(module.log_prob(z, c) + slope.abs().log().squeeze(1), normal)
    if config.kind == "mog":  # a mixture's median moves when T scales its components' spreads
        return
    median = module.generate(torch.zeros(1, 1, dtype=torch.float64), 0.5, None if c is None else c[:1])
    torch.testing.assert_close(median, module.generate(torch.zeros(1, 1, dtype=torch.float64), 2.0,
                                                       None if c is None else c[:1]))


# -- autoregressive conditioners ---------------------------------------------------------------
@pytest.mark.parametrize("config", _defaults(AR_CONDITIONER_KINDS))
@pytest.mark.parametrize("context", [0, 3])
def test_autoregressive_conditioner_contract(config, context):
    torch.manual_seed(0)
    features, outputs = 5, 2
    config = config.narrow(8) if hasattr(config, "narrow") else config
    degrees = torch.tensor([3, 1, 5, 2, 4])
    net = _perturbed(config.build(features, outputs, context, degrees).double())
    cost = config.cost(features, outputs, context)
    assert cost.params == sum(p.numel() for p in net.parameters())
    x = torch.randn(4, features, dtype=torch.float64)
    h = torch.randn(4, context, dtype=torch.float64) if context else None
    with FlopCounterMode(display=False) as counter:
        out = net(x, h)
    assert out.shape == (4, outputs, features)
    assert counter.get_total_flops() == 4 * cost.matmul_flops_forward
    assert sum(op.flops() for op in config.matmul_ops(features, outputs, context)) <= cost.matmul_flops_forward
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v.view(1, -1), None if h is None else h[:1]).sum(1),
                                                  x[0]).squeeze(0)  # (features out, features in)
    allowed = degrees[None, :] < degrees[:, None]
    assert jacobian[~allowed].abs().max() == 0, "an output reads an input at or after it in the order"
    assert jacobian[allowed].abs().sum() > 0
    if context:
        assert not torch.allclose(net(x, h + 1.0)[:, :, degrees > 1], out[:, :, degrees > 1])
    out.square().sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


# -- conditions ------------------------------------------------------------------------------
@pytest.mark.parametrize("config", _defaults(CONDITION_KINDS, CONDITION_EXAMPLES))
def test_condition_contract(config):
    torch.manual_seed(0)
    embedding = config.build().double()
    cost = config.cost()
    assert cost.params == sum(p.numel() for p in embedding.parameters())
    c = config.as_tensor(config.random(4, torch.Generator().manual_seed(1)), 4, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        h = embedding(c)
    assert h.shape == (4, config.features)
    assert counter.get_total_flops() == 4 * cost.matmul_flops_forward
    assert sum(op.flops() for op in config.matmul_ops()) == cost.matmul_flops_forward
    one = config.random(1)[0]
    assert config.is_one(one) and config.as_tensor(one, 3, dtype=torch.float64).shape[0] == 3
    h.square().sum().backward()
    for name, parameter in embedding.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"


# -- dequantizers ------------------------------------------------------------------------------
def _saved_elements(module, x) -> float:
    """Float32 elements of the distinct non-parameter tensors autograd saves in a training ``module(x)``."""
    return saved_activation_bytes(module, x, loss=module) / 4


@pytest.mark.parametrize("config", _defaults(DEQUANTIZER_KINDS))
@pytest.mark.parametrize("shape", [IMAGE, VECTOR], ids=["image", "vector"])
def test_dequantizer_contract(config, shape):
    assert not config.graph_problems(shape, lambda message, *args, **kwargs: Problem(message, ()))
    torch.manual_seed(0)
    module = config.build(shape, 17).train()
    cost = config.cost(shape)
    assert cost.params == sum(p.numel() for p in module.parameters())
    x = torch.randint(0, 17, (5, *shape)).float()
    v, log_q = module(x)
    assert v.shape == x.shape and log_q.shape == (5,) and torch.isfinite(log_q).all()
    assert bool(((v >= x) & (v < x + 1)).all())
    for batch in (2, 5):
        x = torch.randint(0, 17, (batch, *shape)).float()
        assert _saved_elements(module, x) == batch * cost.activations + cost.call_activations


# -- likelihoods -------------------------------------------------------------------------------
@pytest.mark.parametrize("config", _defaults(LIKELIHOOD_KINDS))
def test_likelihood_contract(config):
    """``p(x|z)`` sums to 1 over the levels, entry by entry; its mode and draws are levels."""
    levels = 5 if not config.problems(5) else 2
    torch.manual_seed(0)
    params = torch.randn(3, 4, config.params_per_entry(levels), dtype=torch.float64) * 3
    total = torch.zeros(3, 4, dtype=torch.float64)
    for level in range(levels):
        x = torch.full((3, 4), float(level), dtype=torch.float64)
        total += config.log_prob_elements(params, x, levels).exp()
    torch.testing.assert_close(total, torch.ones(3, 4, dtype=torch.float64))
    for draw in (config.mode(params, levels), config.sample(params, levels, torch.Generator().manual_seed(0))):
        assert draw.shape == (3, 4) and set(draw.unique().tolist()) <= set(range(levels))
    x = torch.randint(0, levels, (50, 4)).float()
    start = config.initial_params(x, levels)
    assert start.shape == (4, config.params_per_entry(levels)) and torch.isfinite(start).all()
