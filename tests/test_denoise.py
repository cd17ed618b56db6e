"""Noise augmentation (``training.noise``) and Tweedie's one-step denoiser (``FlowModel.denoise``).

On Gaussian data ``y ~ N(mu, s^2)`` with noise ``x = y + sigma eps`` the noisy density is
``N(mu, s^2 + sigma^2)`` and the posterior mean is known exactly:
``E[y | x] = mu + s^2 / (s^2 + sigma^2) (x - mu) = x + sigma^2 grad log p_sigma(x)`` (Tweedie).
"""

from __future__ import annotations

import pytest
import torch

from flowspec import SpecError, compile, loads_spec
from flowspec.errors import FlowSpecError

MU = torch.tensor([1.0, -2.0], dtype=torch.float64)
S = torch.tensor([0.5, 1.0], dtype=torch.float64)
SIGMA = 0.5

TOY = """
input: {shape: [2], data: continuous}
prior: standard
layers:
  - actnorm
  - {kind: coupling, mask: channel, scale: exp, conditioner: {kind: mlp, hidden: [16]}}
training: {noise: 0.5}
"""


def _posterior_mean(x):
    return MU + S ** 2 / (S ** 2 + SIGMA ** 2) * (x - MU)


def test_an_exact_model_of_the_noisy_data_denoises_to_the_posterior_mean():
    """Actnorm set to the noisy Gaussian, ``z = (x - mu) / sqrt(s^2 + sigma^2)``, the coupling at
    its zero init: the model is ``p_sigma`` exactly, so denoise is the posterior mean."""
    model = compile(loads_spec(TOY)).double().eval()
    actnorm = model.layers[0]
    with torch.no_grad():
        scale = (S ** 2 + SIGMA ** 2).sqrt()
        for name, value in (("bias", -MU), ("log_scale", -scale.log())):
            getattr(actnorm, name).copy_(value.view_as(getattr(actnorm, name)))
        actnorm.mark_initialized()
    x = MU + torch.randn(50, 2, dtype=torch.float64) * 2
    torch.testing.assert_close(model.denoise(x), _posterior_mean(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.denoise(x, sigma=0.0), x)


def test_noise_is_drawn_in_training_only():
    model = compile(loads_spec(TOY)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    model.initialize(x)
    model.train()
    assert not torch.equal(model.elbo(x), model.elbo(x))  # a new noise draw per call
    model.eval()
    torch.testing.assert_close(model.elbo(x), model.log_prob(x), rtol=0, atol=0)  # eval: y itself, no noise
    clean = compile(loads_spec(TOY.replace("training: {noise: 0.5}", ""))).double()
    clean.load_state_dict(model.state_dict())
    clean.train()
    torch.testing.assert_close(clean.elbo(x), model.eval().log_prob(x), rtol=0, atol=0)


def test_a_flow_trained_on_noisy_gaussian_data_denoises_toward_the_posterior_mean():
    torch.manual_seed(0)
    model = compile(loads_spec(TOY)).double()
    data = MU + S * torch.randn(2000, 2, dtype=torch.float64)
    model.initialize(data[:500])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for step in range(200):
        optimizer.zero_grad()
        model.loss_per_dim(data[(step % 4) * 500:(step % 4 + 1) * 500]).mean().backward()
        optimizer.step()
    model.eval()
    y = MU + S * torch.randn(4000, 2, dtype=torch.float64)
    x = y + SIGMA * torch.randn_like(y)
    target = _posterior_mean(x)
    before = (x - target).square().mean()
    after = (model.denoise(x) - target).square().mean()
    assert after < 0.05 * before, (float(after), float(before))
    # and the denoised points are closer to the clean ones than the noisy points were
    assert (model.denoise(x) - y).square().mean() < 0.8 * (x - y).square().mean()


def test_sample_denoise_applies_the_denoiser_to_the_same_draws():
    model = compile(loads_spec(TOY)).double().eval()
    with torch.no_grad():
        model.layers[0].log_scale.fill_(0.3)
    model.layers[0].mark_initialized()
    plain = model.sample(5, generator=torch.Generator().manual_seed(1))
    denoised = model.sample(5, generator=torch.Generator().manual_seed(1), denoise=True)
    torch.testing.assert_close(denoised, model.denoise(plain))


def test_denoise_without_noise_in_the_spec_is_refused():
    model = compile(loads_spec(TOY.replace("training: {noise: 0.5}", ""))).double()
    with pytest.raises(FlowSpecError, match="this spec has no training.noise"):
        model.denoise(torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(FlowSpecError, match="this spec has no training.noise"):
        model.sample(2, denoise=True)


def test_negative_noise_is_one_located_error():
    with pytest.raises(SpecError, match=r"<spec>:7:12: training\.noise.*standard deviation sigma.*got -0\.1") as error:
        loads_spec(TOY.replace("noise: 0.5", "noise: -0.1"))
    assert len(error.value.problems) == 1


def test_a_vae_refuses_noise():
    text = """
model: vae
input: {shape: [1, 8, 8], levels: 17}
latent: 4
training: {noise: 0.1}
"""
    with pytest.raises(SpecError, match="noise augmentation and its denoiser are for flows"):
        loads_spec(text)


DIGITS = """
name: noisy-digits
input: {shape: [1, 8, 8], levels: 17}
prior: standard
layers:
  - squeeze
  - {kind: coupling, mask: shuffled, seed: 1, scale: sigmoid2, order: shift_scale,
     conditioner: {kind: vit, width: 8, heads: 2}}
training: {noise: 0.05, batch_size: 32, steps: 3, eval_every: 3, checkpoint_every: 3, sample_every: 3,
           eval_batches: 1}
"""


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    from typer.testing import CliRunner

    from flowspec.cli.app import app

    runner = CliRunner()
    folder = tmp_path_factory.mktemp("noisy")
    for name, text in (("noisy", DIGITS), ("clean", DIGITS.replace("noise: 0.05, ", ""))):
        (folder / f"{name}.yaml").write_text(text)
        result = runner.invoke(app, ["train", str(folder / f"{name}.yaml"), "--out", str(folder / name),
                                     "--no-progress"])
        assert result.exit_code == 0, result.output
    return runner, app, folder


def test_cli_sample_denoise_writes_the_denoised_draws(noisy_run):
    import numpy as np

    from flowspec.compile.export import load_model

    runner, app, folder = noisy_run
    checkpoint = str(folder / "noisy" / "last.pt")
    result = runner.invoke(app, ["sample", checkpoint, "--denoise", "-n", "6", "-o", str(folder / "d.npy"),
                                 "--temperature", "1"])
    assert result.exit_code == 0, result.output
    assert "denoised at sigma 0.05" in result.output
    model = load_model(checkpoint)
    drawn = model.sample(6, temperature=1.0, generator=torch.Generator().manual_seed(0))
    expected = model.to_data_space(model.denoise(drawn)).numpy().astype(np.int64)
    assert np.array_equal(np.load(folder / "d.npy"), expected)
    assert runner.invoke(app, ["sample", checkpoint, "--denoise", "-n", "4", "-o", str(folder / "d.png")]).exit_code == 0


def test_cli_eval_labels_a_noisy_model(noisy_run):
    runner, app, folder = noisy_run
    noisy = runner.invoke(app, ["eval", str(folder / "noisy" / "last.pt")])
    clean = runner.invoke(app, ["eval", str(folder / "clean" / "last.pt")])
    assert noisy.exit_code == clean.exit_code == 0
    assert "a noisy model: trained on inputs plus N(0, 0.05^2) noise" in noisy.output
    assert "a noisy model" not in clean.output


def test_cli_sample_denoise_without_noise_is_one_line(noisy_run):
    runner, app, folder = noisy_run
    result = runner.invoke(app, ["sample", str(folder / "clean" / "last.pt"), "--denoise", "-o", str(folder / "x.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "has no training.noise" in result.output
