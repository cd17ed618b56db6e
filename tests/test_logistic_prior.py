"""NICE's factorised standard logistic prior (``prior: logistic``, arXiv:1410.8516 sec. 3.4):
its density against the analytic formula and ``torch.distributions``, its sampler's moments and
CDF, temperature, a whole logistic-prior flow (round trip, change of variables, bits/dim, export,
save/load), the cost row, and the loader's error for an unknown prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import SigmoidTransform, TransformedDistribution, Uniform
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.compile.export import export_programs, load_model, save_model
from flowspec.errors import SpecError
from flowspec.priors import TopPrior
from flowspec.report.costs import count_params, top_prior_cost

NICE_LOGISTIC = """\
input: {shape: [6], levels: 16}
prior: logistic
layers:
  - {kind: coupling, transform: additive, parity: 0, conditioner: {kind: mlp, hidden: [12, 12]}}
  - {kind: coupling, transform: additive, parity: 1, conditioner: {kind: mlp, hidden: [12, 12]}}
  - {kind: coupling, transform: additive, parity: 0, conditioner: {kind: mlp, hidden: [12, 12]}}
  - scaling
"""


def _logistic_reference() -> TransformedDistribution:
    """Standard logistic as ``logit(U(0, 1))``, in float64."""
    zero, one = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    return TransformedDistribution(Uniform(zero, one), [SigmoidTransform().inv])


def _model(seed: int = 0) -> flowspec.FlowModel:
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(NICE_LOGISTIC)).double()
    with torch.no_grad():  # move off the identity so the test sees a real flow
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def test_log_prob_is_the_analytic_density_and_torch_distributions():
    prior = TopPrior((5,), "logistic").double()
    z = torch.linspace(-30.0, 30.0, 40, dtype=torch.float64).view(8, 5)
    analytic = (-z - 2 * torch.log1p(torch.exp(-z))).sum(1)  # log e^{-z} / (1 + e^{-z})^2
    reference = _logistic_reference().log_prob(z).sum(1)
    log_prob = prior.log_prob(z)
    assert log_prob.shape == (8,)
    torch.testing.assert_close(log_prob, analytic, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_prob, reference, rtol=0, atol=1e-6)
    # at z = 0 the density is 1/4 per entry
    torch.testing.assert_close(prior.log_prob(torch.zeros(1, 5, dtype=torch.float64)),
                               torch.tensor([5 * math.log(0.25)], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_is_finite_and_linear_in_the_tails(dtype):
    prior = TopPrior((2,), "logistic").to(dtype)
    z = torch.tensor([[1e3, -1e3], [1e4, 0.0]], dtype=dtype)
    log_prob = prior.log_prob(z)
    assert torch.isfinite(log_prob).all()
    # log p(z) -> -|z| for large |z|: sum of -|z_d| (and log 1/4 for the zero entry)
    expected = torch.tensor([-2e3, -1e4 + math.log(0.25)], dtype=torch.float64)
    torch.testing.assert_close(log_prob.double(), expected, rtol=1e-6, atol=1e-3)
    # and the gradient is finite too (softplus, not log(1 + exp))
    z = z.clone().requires_grad_(True)
    prior.log_prob(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def _draws(n: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    prior = TopPrior((4,), "logistic").double()
    eps = torch.randn(n // 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return prior.generate(eps, temperature).flatten()


def test_samples_have_the_logistic_mean_variance_and_cdf():
    z = _draws(200_000)
    n, variance = z.numel(), math.pi ** 2 / 3
    assert torch.isfinite(z).all()
    assert abs(z.mean().item()) < 3 * math.sqrt(variance / n)
    # the sample variance's standard error: sigma^2 sqrt((kurtosis - 1) / n), kurtosis 4.2
    assert abs(z.var().item() - variance) < 3 * variance * math.sqrt(3.2 / n)
    # empirical CDF against sigmoid at a few points, each within 3 binomial standard errors
    for t in (-4.0, -1.0, 0.0, 0.5, 2.0, 5.0):
        p = torch.sigmoid(torch.tensor(t)).item()
        assert abs((z <= t).double().mean().item() - p) < 3 * math.sqrt(p * (1 - p) / n), t


def test_temperature_scales_the_spread():
    cold, warm = _draws(200_000, 0.5), _draws(200_000, 1.0)
    torch.testing.assert_close(cold, 0.5 * warm)  # same noise: exactly half
    ratio = cold.std() / math.sqrt(math.pi ** 2 / 3)
    assert abs(ratio.item() - 0.5) < 0.01
    assert (_draws(8, 0.0) == 0).all()  # temperature 0: the median


@pytest.mark.parametrize("dtype, bound", [(torch.float32, 87.3), (torch.float64, 708.3)])
def test_sampler_saturates_finitely_for_extreme_noise(dtype, bound):
    prior = TopPrior((5,), "logistic").to(dtype)
    z = prior.generate(torch.tensor([[-1e4, -40.0, 0.0, 40.0, 1e4]], dtype=dtype), 1.0)
    assert torch.isfinite(z).all() and z[0, 2] == 0
    torch.testing.assert_close(z[0, [0, 1, 3, 4]].double(),
                               torch.tensor([-bound, -bound, bound, bound], dtype=torch.float64),
                               rtol=0, atol=0.1)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_sampler_is_the_logistic_quantile_of_phi(dtype, tolerance):
    """``z = logit(Phi(eps))``, against the exact ``log Phi(eps) - log Phi(-eps)`` in float64, over
    the noise any float32 draw can produce and deep into the tails."""
    eps = torch.linspace(-12.5, 12.5, 2001, dtype=torch.float64)
    exact = torch.special.log_ndtr(eps) - torch.special.log_ndtr(-eps)
    z = TopPrior((2001,), "logistic").to(dtype).generate(eps.to(dtype).view(1, -1), 1.0)
    torch.testing.assert_close(z.double().flatten(), exact, rtol=tolerance, atol=tolerance)
    moderate = eps.abs() < 5  # and sigmoid(z) = Phi(eps) where both are well conditioned
    phi = torch.distributions.Normal(0.0, 1.0).cdf(eps[moderate])
    torch.testing.assert_close(torch.sigmoid(z.double().flatten()[moderate]), phi,
                               rtol=10 * tolerance, atol=10 * tolerance)


def test_whole_logistic_flow_round_trips_and_its_log_prob_is_the_change_of_variables():
    model = _model()
    assert model.top_prior.kind == "logistic" and not list(model.top_prior.parameters())
    x = torch.randn(4, 6, dtype=torch.float64)
    with torch.no_grad():
        zs, logdet = model(x)
        back, inverse_logdet = model.inverse(zs)
        log_prob = model.log_prob(x)
    torch.testing.assert_close(back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet)
    (z,) = zs
    for i in range(x.shape[0]):
        def flat(v):
            return model(v.view(1, 6))[0][0].flatten()
        jacobian = torch.autograd.functional.jacobian(flat, x[i])
        log_det_by_hand = torch.linalg.slogdet(jacobian)[1]
        log_pz_by_hand = (-z[i] - 2 * torch.log1p(torch.exp(-z[i]))).sum()
        torch.testing.assert_close(log_prob[i], log_pz_by_hand + log_det_by_hand, rtol=1e-9, atol=1e-9)
    data = torch.randint(0, 16, (5, 6)).double()
    bits = model.bits_per_dim(data)
    assert bits.shape == (5,) and torch.isfinite(bits).all()


def test_whole_logistic_flow_samples():
    model = _model()
    samples = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (6, 6) and samples.dtype == torch.float64 and torch.isfinite(samples).all()
    with torch.no_grad():
        (z,), _ = model(samples)
    eps = torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(z, model.top_prior.generate(eps, 1.0))  # the top latent was logistic
    zeros = [torch.zeros(3, 6, dtype=torch.float64)]
    torch.testing.assert_close(model.sample(3, temperature=0.0), model.inverse(zeros)[0])


def test_logistic_flow_exports_and_reloads(tmp_path):
    model = _model().float()
    paths = export_programs(model, tmp_path / "export", batch=3)  # checks each against eager
    assert all(path.exists() for path in paths.values())
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.top_prior.kind == "logistic"
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x))


def test_cost_row_has_no_parameters_and_counts_the_softplus_work():
    graph = flowspec.build_graph(flowspec.loads_spec(NICE_LOGISTIC))
    cost = top_prior_cost(graph)
    assert cost.params == 0 and cost.flops_forward == 9 * 6 and cost.flops_inverse == 11 * 6
    assert count_params(graph) == sum(p.numel() for p in _model().parameters())


@pytest.mark.parametrize("bad", ["cauchy", "Logistic"])
def test_unknown_prior_is_a_located_spec_error(bad):
    text = NICE_LOGISTIC.replace("prior: logistic", f"prior: {bad}")
    with pytest.raises(SpecError, match=rf"^nice\.yaml:2:\d+: prior: unknown kind '{bad}' .*known: learned, "
                                        r"learned_channel, logistic, mog, standard") as error:
        flowspec.loads_spec(text, "nice.yaml")
    assert len(error.value.problems) == 1


def test_unknown_prior_through_the_cli_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(NICE_LOGISTIC.replace("prior: logistic", "prior: cauchy"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.yaml:2:" in lines[0] and "prior:" in lines[0], result.output
    assert "Traceback" not in result.output
