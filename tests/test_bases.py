"""Base densities of tables: MAF's autoregressive mixture of Gaussians (``prior: {kind: mog}``, MADE MoG)
and the learned diagonal Gaussian (``prior: learned``), both conditional when the spec has a condition."""

from __future__ import annotations

import math

import pytest
import torch

from flowspec import build_graph, compile, loads_spec
from flowspec.priors.mog import MixturePriorConfig
from flowspec.report.costs import count_params


def _perturbed_prior(components: int, shape=(2,), context: int = 0, seed: int = 0):
    torch.manual_seed(seed)
    prior = MixturePriorConfig(components=components, hidden=8).build(shape, context).double()
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.add_(0.25 * torch.randn_like(parameter))
    return prior


@pytest.mark.parametrize("context", [0, 3])
def test_the_mixture_is_a_normalized_density_in_two_dimensions(context):
    prior = _perturbed_prior(3, context=context)
    h = torch.randn(1, 3, dtype=torch.float64) if context else None
    # x = 2 sinh(u): fine near 0 and out to |x| ~ 3000, where the MADE's log-stds (growing with |x_1|)
    # put the second entry's mass; the density in u carries the Jacobian dx/du = 2 cosh(u) per axis
    u = torch.linspace(-8, 8, 1201, dtype=torch.float64)
    axis, jacobian = 2 * torch.sinh(u), 2 * torch.cosh(u)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = prior.log_prob(grid, None if h is None else h.expand(len(grid), 3)).exp().view(1201, 1201)
    total = torch.trapezoid(torch.trapezoid(density * jacobian[:, None] * jacobian[None, :], u, dim=1), u).item()
    assert abs(total - 1) < 1e-6


def test_each_entrys_mixture_depends_only_on_the_entries_before_it():
    prior = _perturbed_prior(4, shape=(5,))
    z = torch.randn(1, 5, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: torch.cat(prior.mixture(v.view(1, 5))).flatten(1), z[0])
    jacobian = jacobian.view(3, 4, 5, 5)  # [head, component, entry i, input j]
    assert jacobian[..., torch.triu(torch.ones(5, 5, dtype=torch.bool))].abs().max() == 0
    assert jacobian[..., torch.tril(torch.ones(5, 5, dtype=torch.bool), -1)].abs().max() > 0


def test_sampling_inverts_each_entrys_mixture_cdf_at_phi_of_the_noise():
    """z_i = F_i^{-1}(Phi(eps_i) | z_<i): the mixture's CDF at the sample gives back Phi(eps)."""
    prior = _perturbed_prior(3, shape=(4,))
    eps = torch.randn(6, 4, dtype=torch.float64)
    with torch.no_grad():
        z = prior.generate(eps, 1.0)
        log_pi, means, log_stds = prior.mixture(z)
    cdf = (log_pi.exp() * 0.5 * torch.special.erfc(-(z.unsqueeze(1) - means) / (log_stds.exp() * math.sqrt(2)))).sum(1)
    torch.testing.assert_close(cdf, 0.5 * torch.special.erfc(-eps / math.sqrt(2)), atol=1e-9, rtol=0)


MOG = """
input: {{shape: [1], data: continuous}}
prior: {prior}
layers: [actnorm]
"""


def _fit(prior: str, data: torch.Tensor, steps: int = 300) -> float:
    torch.manual_seed(0)
    model = compile(loads_spec(MOG.format(prior=prior)))
    model.initialize(data)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model.nats_per_dim(data).mean()
        loss.backward()
        optimizer.step()
    return loss.item()


def test_a_mixture_base_fits_two_modes_that_a_gaussian_base_cannot():
    torch.manual_seed(1)
    data = torch.cat([torch.randn(300, 1) * 0.3 - 2, torch.randn(300, 1) * 0.3 + 2])
    mixture = _fit("{kind: mog, components: 4, hidden: 4}", data)
    gaussian = _fit("learned", data)
    assert mixture < gaussian - 0.5  # two bumps of std 0.3 vs one Gaussian of std ~2


CONDITIONAL = """
input: {{shape: [3], data: continuous}}
condition: {{kind: class, classes: 2, embed: 4}}
prior: {prior}
layers: [{{kind: maf, hidden: 8}}]
"""


@pytest.mark.parametrize("prior", ["learned", "{kind: mog, components: 3, hidden: 8}"])
def test_conditional_bases_depend_on_the_condition_and_the_report_counts_them(prior):
    spec = loads_spec(CONDITIONAL.format(prior=prior))
    model = compile(spec).double()
    assert count_params(build_graph(spec)) == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for parameter in model.top_prior.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    z = torch.randn(4, 3, dtype=torch.float64)
    h0 = model.features(torch.zeros(4, dtype=torch.long), 4, z)
    h1 = model.features(torch.ones(4, dtype=torch.long), 4, z)
    assert not torch.allclose(model.top_prior.log_prob(z, h0), model.top_prior.log_prob(z, h1))
    samples = model.sample(5, condition=1)
    assert samples.shape == (5, 3) and torch.isfinite(samples).all()
