"""VAE with an IAF posterior: MADE masks, IAF log-dets, posterior density, bounds, training,
likelihood normalisation, spec errors with YAML lines."""

from __future__ import annotations

import math

import pytest
import torch

import flowspec
from flowspec.errors import SpecError
from flowspec.vae import likelihoods
from flowspec.vae.iaf import IAFStep
from flowspec.layers.made import MADE
from flowspec.vae.model import VAEModel, standard_normal_log_prob

DIGITS_VAE = """\
model: vae
input: {shape: [1, 8, 8], levels: 17}
latent: 6
encoder: {kind: conv, hidden: 8, depth: 2, context: 5}
decoder: {kind: conv, hidden: 8, depth: 2}
likelihood: logistic
posterior: {kind: iaf, steps: 3, hidden: 12}
"""

VECTOR_VAE = """\
model: vae
input: {shape: [10], levels: 2}
latent: 4
encoder: {kind: mlp, hidden: 16, context: 3}
decoder: {kind: mlp, hidden: 16}
likelihood: bernoulli
posterior: {steps: 2, hidden: 8}
"""


def randomize(module: torch.nn.Module, std: float = 0.5) -> None:
    """Replace every weight with a draw far from the near-identity init, so masks are visible."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


def model_of(text: str, seed: int = 0) -> VAEModel:
    torch.manual_seed(seed)
    return flowspec.compile(flowspec.loads_spec(text)).double()


def data_like(model: VAEModel, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.levels, (n, *model.input_shape), generator=g).double()


# -- MADE --------------------------------------------------------------------------------------
@pytest.mark.parametrize("features,hidden,depth,order", [
    (5, 4, 1, "natural"), (5, 4, 2, "reverse"), (7, 20, 1, "random"), (6, 5, 3, "random"), (3, 2, 1, "reverse"),
], ids=lambda v: str(v))
def test_made_is_autoregressive_in_its_order(features, hidden, depth, order):
    torch.manual_seed(features * 100 + hidden)
    degrees = {"natural": torch.arange(1, features + 1), "reverse": torch.arange(features, 0, -1),
               "random": torch.randperm(features) + 1}[order]
    made = MADE(features, hidden, depth, context=3, degrees=degrees, outputs=2).double()
    randomize(made)
    z, h = torch.randn(1, features, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    allowed = degrees[None, :] < degrees[:, None]  # [i, j]: output i may see input j
    for head in range(2):
        jac = torch.autograd.functional.jacobian(lambda v: made(v, h)[0, head], z)[:, 0, :]
        assert torch.all(jac[~allowed] == 0), f"head {head} sees a later input:\n{jac}"
        # hidden >= D - 1: every allowed connection exists (the masks are not too strict either)
        assert torch.all(jac[allowed] != 0), f"head {head} misses an earlier input:\n{jac}"
        jac_h = torch.autograd.functional.jacobian(lambda v: made(z, v)[0, head], h)[:, 0, :]
        assert torch.all(jac_h.abs().sum(1) > 0), "the context reaches every output"


def test_made_rejects_degrees_that_are_not_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, 4, degrees=torch.tensor([1, 1, 2]))


# -- IAF step ----------------------------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_logdet_equals_slogdet_of_autograd_jacobian(reverse):
    torch.manual_seed(3)
    step = IAFStep(5, 8, depth=2, context=2, reverse=reverse).double()
    randomize(step)
    z, h = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    out, logdet = step(z, h)
    assert logdet.shape == (4,)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: step(v[None], h[b:b + 1])[0][0], z[b])
        sign, expected = torch.linalg.slogdet(jac)
        assert sign > 0
        torch.testing.assert_close(logdet[b], expected, rtol=1e-10, atol=1e-10)
        # triangular in the order: reorder rows and columns by rank, the upper part is zero
        rank = torch.argsort(step.made.degrees)
        assert torch.all(torch.triu(jac[rank][:, rank], diagonal=1) == 0)
    back, inverse_logdet = step.inverse(out, h)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inverse_logdet, -logdet)


def test_iaf_starts_near_identity():
    torch.manual_seed(0)
    step = IAFStep(6, 16, context=4, gate_bias=2.0).double()
    z = torch.randn(32, 6, dtype=torch.float64)
    out, logdet = step(z, torch.randn(32, 4, dtype=torch.float64))
    gate = torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(out, gate * z, atol=0.05, rtol=0.0)
    torch.testing.assert_close(logdet, torch.full((32,), 6 * math.log(gate), dtype=torch.float64), atol=0.05, rtol=0.0)


def test_iaf_steps_alternate_the_order():
    model = model_of(DIGITS_VAE)
    orders = [step.made.degrees.tolist() for step in model.iaf]
    assert orders[0] == list(range(1, 7)) and orders[1] == list(range(6, 0, -1)) and orders[2] == orders[0]


# -- the posterior and the bounds --------------------------------------------------------------
@pytest.mark.parametrize("text", [DIGITS_VAE, VECTOR_VAE, DIGITS_VAE.replace("kind: conv", "kind: mlp")],
                         ids=["conv", "mlp", "mlp-on-image"])
def test_posterior_log_q_equals_change_of_variables_through_autograd(text):
    model = model_of(text)
    randomize(model.iaf)
    x = data_like(model, 3)
    mu, sigma, h = model.encoder(x)
    eps = torch.randn_like(mu)
    z, log_q = model.posterior(eps, mu, sigma, h)
    for b in range(3):
        def whole_map(e):
            return model.posterior(e[None], mu[b:b + 1], sigma[b:b + 1], h[b:b + 1])[0][0]
        jac = torch.autograd.functional.jacobian(whole_map, eps[b])
        expected = standard_normal_log_prob(eps[b]) - torch.linalg.slogdet(jac)[1]
        torch.testing.assert_close(log_q[b], expected, rtol=1e-10, atol=1e-10)


def test_elbo_below_importance_weighted_bound_which_grows_with_k():
    model = model_of(DIGITS_VAE)
    x = data_like(model, 64)
    torch.manual_seed(5)
    with torch.no_grad():
        w = model.log_weights(x, 16)
        # same draws: log-mean-exp >= mean (Jensen), per example
        assert torch.all(torch.logsumexp(w, 1) - math.log(16) >= w.mean(1) - 1e-12)
        elbo = model.elbo(x, samples=64).mean()
        iw = [model.iw_log_likelihood(x, k).mean() for k in (2, 8, 64)]
    assert elbo < iw[0] < iw[1] < iw[2], (elbo, iw)


def test_bits_per_dim_is_negative_elbo_over_d_log_2():
    model = model_of(VECTOR_VAE)
    x = data_like(model, 8)
    torch.manual_seed(2)
    bpd = model.bits_per_dim(x)
    torch.manual_seed(2)
    elbo = model.elbo(x)
    assert bpd.shape == (8,)
    torch.testing.assert_close(bpd, -elbo / (10 * math.log(2)))
    torch.manual_seed(3)
    iw_bpd = model.bits_per_dim(x, k=8)
    torch.manual_seed(3)
    torch.testing.assert_close(iw_bpd, -model.iw_log_likelihood(x, 8) / (10 * math.log(2)))


# -- likelihoods -------------------------------------------------------------------------------
def test_the_logistic_likelihood_is_normalised_with_sharp_and_far_off_components():
    """(Every likelihood's normalisation: tests/test_kind_contract.py.)"""
    config = likelihoods.LIKELIHOOD_KINDS["logistic"]()
    params = torch.randn(3, 4, 2, dtype=torch.float64) * 3
    params[0, 0] = torch.tensor([0.1, -6.0])
    params[0, 1] = torch.tensor([40.0, -5.0])
    total = sum(config.log_prob_elements(params, torch.full((3, 4), float(level), dtype=torch.float64), 5).exp()
                for level in range(5))
    torch.testing.assert_close(total, torch.ones(3, 4, dtype=torch.float64))


def test_logistic_likelihood_gradients_are_finite_in_the_tails():
    params = torch.tensor([[[50.0, -7.0], [-50.0, -7.0], [0.0, 3.0]]], requires_grad=True)
    x = torch.tensor([[1.0, 15.0, 8.0]])
    log_p = likelihoods.log_prob("logistic", params, x, 17)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(params.grad).all()


# -- generation, init, save/load ---------------------------------------------------------------
LIKELIHOOD_VARIANTS = {
    "logistic": DIGITS_VAE,
    "categorical": DIGITS_VAE.replace("likelihood: logistic", "likelihood: categorical"),
    "bernoulli-mlp": DIGITS_VAE.replace("levels: 17", "levels: 2").replace("likelihood: logistic", "likelihood: bernoulli")
                               .replace("kind: conv", "kind: mlp"),
}


@pytest.mark.parametrize("variant", sorted(LIKELIHOOD_VARIANTS))
def test_sample_and_reconstruct_are_in_data_space(variant):
    model = model_of(LIKELIHOOD_VARIANTS[variant])
    samples = model.sample(5, temperature=0.7, generator=torch.Generator().manual_seed(0))
    drawn = model.sample(5, temperature=1.0, mean=False)
    recon = model.reconstruct(data_like(model, 4))
    for t, n in ((samples, 5), (drawn, 5), (recon, 4)):
        assert t.shape == (n, 1, 8, 8)
        assert torch.all((t >= 0) & (t <= model.levels - 1) & (t == t.round()))


@pytest.mark.parametrize("variant", sorted(LIKELIHOOD_VARIANTS))
def test_initialize_fits_the_marginal_and_lowers_the_loss(variant):
    from sklearn.datasets import load_digits

    model = model_of(LIKELIHOOD_VARIANTS[variant])
    x = torch.tensor(load_digits().images[:256], dtype=torch.float64).unsqueeze(1)
    if model.levels == 2:
        x = (x > 8).double()
    torch.manual_seed(0)
    before = model.bits_per_dim(x).mean()
    model.initialize(x)
    assert model.initialized
    torch.manual_seed(0)
    after = model.bits_per_dim(x).mean()
    assert after < before
    bias = model.decoder.body[-1].bias.clone()
    model.initialize(x * 0)  # idempotent: a second call changes nothing
    assert torch.equal(bias, model.decoder.body[-1].bias)


def test_save_and_load_round_trip(tmp_path):
    model = model_of(DIGITS_VAE).float()
    x = data_like(model, 4).float()
    flowspec.save_model(model, tmp_path / "vae.pt")
    loaded = flowspec.load_model(tmp_path / "vae.pt")
    assert isinstance(loaded, VAEModel)
    eps = torch.randn(4, 6)
    torch.testing.assert_close(loaded(x, eps)[1], model(x, eps)[1])


# -- training machinery -----------------------------------------------------------------------
def test_an_iaf_posterior_trains():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(DIGITS_VAE.replace("hidden: 8", "hidden: 16")))
    x = torch.tensor(load_digits().images[:256], dtype=torch.float32).unsqueeze(1)
    model.initialize(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(1)
    with torch.no_grad():
        start = model.bits_per_dim(x).mean().item()
    for step in range(60):
        loss = model.bits_per_dim(x[(step % 4) * 64:(step % 4 + 1) * 64]).mean()
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for name, p in model.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
        optimizer.step()
    torch.manual_seed(1)
    with torch.no_grad():
        end = model.bits_per_dim(x).mean().item()
    assert math.isfinite(end) and end < start - 0.1, (start, end)


# -- the graph and spec errors -----------------------------------------------------------------
def test_graph_has_clusters_and_shapes_on_edges():
    graph = flowspec.build_graph(flowspec.loads_spec(DIGITS_VAE)).graph
    assert {graph.nodes[n].get("cluster") for n in graph.nodes if n != "input"} == \
        {"encoder", "posterior", "decoder", "prior"}
    assert graph.edges["input", "encoder"]["shape"] == (1, 8, 8)
    assert graph.edges["iaf.2", "decoder"]["shape"] == (6,)
    assert graph.edges["encoder", "iaf.1"]["shape"] == (5,)  # the context h
    assert graph.edges["decoder", "likelihood"]["shape"] == (1, 8, 8, 2)


@pytest.mark.parametrize("edit,match", [
    (("hidden: 12", "hiden: 12"),
     r"<spec>:7:34: posterior\.hiden: unknown field 'hiden' \(hint: did you mean 'hidden'"),
    (("likelihood: logistic", "likelihood: gaussian"), r"<spec>:6:1: likelihood: unknown kind .gaussian. .hint: known: bernoulli, categorical, logistic"),
    (("likelihood: logistic", "likelihood: bernoulli"),
     r"<spec>:6:1: likelihood: bernoulli needs binarised data .*levels 17"),
    (("latent: 6", "latent: 0"), r"<spec>:3:1: latent: Input should be greater than or equal to 1"),
    (("model: vae", "model: vea"), r"<spec>:1:1: model: unknown model 'vea' \(hint: did you mean 'vae'"),
    (("posterior: {kind: iaf, steps: 3, hidden: 12}", "posterior: {kind: iaf, steps: 3, hidden: 2}"),
     r"<spec>:7:34: posterior\.hidden: MADE hidden width 2 is less than latent - 1 = 5"),
    (("encoder: {kind: conv", "encoder: {kind: cnn"), r"<spec>:4:\d+: encoder\.kind: Input should be 'conv' or 'mlp'"),
    (("latent: 6\n", ""), r"<spec>:1:1: latent: missing field 'latent'"),
    (("latent: 6", "latnet: 6"), r"<spec>:3:1: latnet: unknown field 'latnet' \(hint: did you mean 'latent'"),
    (("decoder: {kind: conv,", "decoder: {kind: conv, widht: 3,"),
     r"<spec>:5:23: decoder\.widht: unknown field 'widht' \(hint: .*known: depth, hidden, kind\)"),
], ids=["typo", "likelihood", "bernoulli-levels", "latent", "model", "made-width", "encoder-kind", "missing",
        "root-typo", "decoder-typo"])
def test_invalid_vae_specs_give_line_numbered_errors(edit, match):
    text = DIGITS_VAE.replace(*edit)
    assert text != DIGITS_VAE or not edit[0]
    with pytest.raises(SpecError, match=match):
        flowspec.build_graph(flowspec.loads_spec(text))


def test_conv_on_vector_data_points_at_the_encoder_and_decoder():
    text = VECTOR_VAE.replace("kind: mlp", "kind: conv")
    with pytest.raises(SpecError) as info:
        flowspec.build_graph(flowspec.loads_spec(text))
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith("<spec>:4:11: encoder.kind: a conv encoder needs an image") for m in messages), messages
    assert any(m.startswith("<spec>:5:11: decoder.kind: a conv decoder needs an image") for m in messages), messages


@pytest.mark.parametrize("path", ["specs/vae-iaf-digits.yaml", "specs/vae-iaf-mnist.yaml"])
def test_example_specs_compile(path):
    from pathlib import Path

    spec = flowspec.load_spec(Path(__file__).parent.parent / path)
    model = flowspec.compile(spec)
    assert isinstance(model, VAEModel) and model.spec is spec
    x = torch.zeros(2, *spec.input.shape)
    assert model.bits_per_dim(x).shape == (2,)


def test_expand_and_build_work_on_a_vae_spec(tmp_path):
    from typer.testing import CliRunner

    from flowspec.cli import app

    path = tmp_path / "vae.yaml"
    path.write_text(DIGITS_VAE)
    runner = CliRunner()
    expanded = runner.invoke(app, ["expand", str(path)])
    assert expanded.exit_code == 0, expanded.output
    assert "kind: conv" in expanded.output and "gate_bias: 2.0" in expanded.output  # defaults written out
    built = runner.invoke(app, ["build", str(path), "--out", str(tmp_path / "out"), "--no-export"])
    assert built.exit_code == 0, built.output
    assert "iaf.2" in built.output and (tmp_path / "out" / "model.pt").is_file()


def test_check_verifies_the_iaf_posterior_of_a_vae_spec(tmp_path):
    from typer.testing import CliRunner

    from flowspec.cli import app

    path = tmp_path / "vae.yaml"
    path.write_text(DIGITS_VAE)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "IAF posterior" in result.output and "autoregressive" in result.output


def test_vae_check_catches_a_made_that_sees_its_own_variable():
    """The triangularity check can fail: a MADE whose output mask lets output i see input i."""
    from flowspec.layers.made import MADE
    from flowspec.vae.check import check_vae

    spec = flowspec.loads_spec(DIGITS_VAE)
    assert check_vae(spec).ok
    original = MADE.__init__

    def leaky(self, *args, **kwargs):
        original(self, *args, **kwargs)
        with torch.no_grad():
            self.out.mask.fill_(1.0)  # every output sees every input

    MADE.__init__ = leaky
    try:
        result = check_vae(spec)
    finally:
        MADE.__init__ = original
    assert result.triangular_error > 1e-3 and not result.ok
