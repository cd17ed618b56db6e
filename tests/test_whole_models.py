"""Whole models from inline specs, in float64: round trip and log-det against the autograd
Jacobian of the full flow; sampling; save/load; ``check_spec`` on every shipped spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowspec
from flowspec.compile.check import check_spec
from flowspec.compile.export import load_model, save_model
from flowspec.layers.split import Split

import yaml

SPECS = sorted(path for path in (Path(__file__).resolve().parent.parent / "specs").glob("*.yaml")
               if yaml.safe_load(path.read_text()).get("model", "flow") == "flow")

GLOW = """\
input: {shape: [2, 8, 8], levels: 256}
prior: learned
levels: 2
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, transform: affine, scale: sigmoid, conditioner: {kind: conv, hidden: 8}}
split: {kind: split, prior: conditional}
"""

REALNVP = """\
input: {shape: [1, 8, 8]}
prior: standard
layers:
  - {kind: coupling, mask: checkerboard, parity: 0, scale: exp, clamp: 2.0, conditioner: {kind: conv, hidden: 8}}
  - {kind: coupling, mask: checkerboard, parity: 1, scale: exp, clamp: 2.0, conditioner: {kind: conv, hidden: 8}}
  - squeeze
  - repeat: 2
    layers:
      - {kind: coupling, mask: channel, parity: 0, scale: exp, conditioner: {kind: conv, hidden: 8, depth: 1}}
      - {kind: coupling, mask: channel, parity: 1, scale: exp, conditioner: {kind: conv, hidden: 8, depth: 1}}
  - {kind: split, prior: standard}
  - {kind: coupling, mask: checkerboard, parity: 0, scale: exp, conditioner: {kind: conv, hidden: 8}}
"""

NICE = """\
input: {shape: [10]}
prior: standard
layers:
  - repeat: 2
    layers:
      - {kind: coupling, transform: additive, parity: 0, conditioner: {kind: mlp, hidden: [16, 16]}}
      - {kind: coupling, transform: additive, parity: 1, conditioner: {kind: mlp, hidden: [16, 16]}}
  - scaling
"""

MODELS = {"glow": GLOW, "realnvp": REALNVP, "nice": NICE}


def _model(text: str, seed: int = 0) -> flowspec.FlowModel:
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(text)).double()
    shape = model.input_shape
    with torch.no_grad():
        model.train()
        model.log_prob(torch.randn(8, *shape, dtype=torch.float64))  # actnorm's data init
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_and_logdet_against_jacobian(name):
    model = _model(MODELS[name])
    shape = model.input_shape
    x = torch.randn(2, *shape, dtype=torch.float64)
    with torch.no_grad():
        zs, logdet = model(x)
        back, inverse_logdet = model.inverse(zs)
    assert [tuple(z.shape[1:]) for z in zs] == [tuple(s) for s in model.latent_shapes]
    assert sum(z[0].numel() for z in zs) == x[0].numel()
    torch.testing.assert_close(back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-9, atol=1e-9)
    assert logdet.abs().max() > 1e-3 or name == "nice"  # the flow is not the identity

    def flat(v):
        return torch.cat([z.flatten() for z in model(v.view(1, *shape))[0]])

    for i in range(x.shape[0]):
        jacobian = torch.autograd.functional.jacobian(flat, x[i].flatten(), vectorize=True)
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jacobian)[1], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_log_prob_is_priors_plus_logdet(name):
    model = _model(MODELS[name])
    x = torch.randn(3, *model.input_shape, dtype=torch.float64)
    with torch.no_grad():
        zs, logdet = model(x)
        expected = logdet + model.top_prior.log_prob(zs[-1])
        # standard priors: N(0, I) on every latent
        if model.spec.prior == "standard" and all(
                layer.prior_net is None for layer in model.layers if isinstance(layer, Split)):
            normal = torch.distributions.Normal(0.0, 1.0)
            expected = logdet + sum(normal.log_prob(z).flatten(1).sum(1) for z in zs)
        else:
            splits = [layer for layer in model.layers if isinstance(layer, Split)]
            assert len(splits) == len(zs) - 1
        log_prob = model.log_prob(x)
    if model.spec.prior == "standard":
        torch.testing.assert_close(log_prob, expected)
    assert log_prob.shape == (3,) and torch.isfinite(log_prob).all()


def test_glow_has_the_multiscale_structure():
    graph = flowspec.build_graph(flowspec.loads_spec(GLOW))
    assert graph.latent_shapes == [(4, 4, 4), (16, 2, 2)]
    kinds = [node.kind for node in graph.layers]
    assert kinds == (["squeeze"] + ["actnorm", "invconv", "coupling"] * 2 + ["split"]
                     + ["squeeze"] + ["actnorm", "invconv", "coupling"] * 2)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sample_shapes_and_temperature_zero(name):
    model = _model(MODELS[name])
    generator = torch.Generator().manual_seed(0)
    samples = model.sample(5, generator=generator)
    assert samples.shape == (5, *model.input_shape) and samples.dtype == torch.float64
    assert torch.isfinite(samples).all()
    # temperature 0: every latent is its prior's mean, whatever the noise
    cold = model.sample(3, temperature=0.0, generator=generator)
    torch.testing.assert_close(cold, model.sample(3, temperature=0.0, generator=generator))
    zeros = [torch.zeros(3, *shape, dtype=torch.float64) for shape in model.latent_shapes]
    torch.testing.assert_close(cold, model.generate(zeros, 1.0))
    if name != "glow":  # standard priors: the mean path is the inverse at z = 0
        torch.testing.assert_close(cold, model.inverse(zeros)[0])
    else:  # the learned top prior's mean is the top latent of the cold sample
        with torch.no_grad():
            zs, _ = model(cold)
        torch.testing.assert_close(zs[-1], model.top_prior.mean.expand_as(zs[-1]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_and_load_model(name, tmp_path):
    model = _model(MODELS[name]).float()
    path = tmp_path / f"{name}.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded is not model and not loaded.training
    x = torch.randn(4, *model.input_shape)
    with torch.no_grad():
        zs, logdet = model(x)
        zs2, logdet2 = loaded(x)
    torch.testing.assert_close(logdet2, logdet, rtol=0, atol=0)
    for a, b in zip(zs, zs2):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert flowspec.load_model is load_model and flowspec.save_model is save_model


def test_load_model_errors(tmp_path):
    with pytest.raises(flowspec.CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(flowspec.CheckpointError, match="not a readable flowspec file"):
        load_model(junk)


def test_shipped_specs_exist():
    assert {path.stem for path in SPECS} >= {"glow", "glow-digits", "realnvp", "nice"}


JACOBIAN_LIMIT = 3072  # input entries of a narrow copy whose full autograd Jacobian check is affordable


def _narrow_dims(path) -> int:
    import math

    from flowspec.compile.check import narrow_spec

    return math.prod(narrow_spec(flowspec.load_spec(path), 4).input.shape)


@pytest.mark.parametrize("path", [p for p in SPECS if _narrow_dims(p) <= JACOBIAN_LIMIT], ids=lambda p: p.stem)
def test_check_spec_on_shipped_specs(path):
    spec = flowspec.load_spec(path)
    result = check_spec(spec, width=4, batch=1)
    assert result.ok, result
    assert result.roundtrip_error < 1e-8 and result.logdet_error < 1e-8


@pytest.mark.parametrize("path", [p for p in SPECS if _narrow_dims(p) > JACOBIAN_LIMIT], ids=lambda p: p.stem)
def test_large_narrow_copies_round_trip(path):
    """glow-celeba's 6 squeezes keep its narrow copy at 3 x 64 x 64: a 12,288-dim Jacobian would take
    tens of minutes, so its check is the round trip and inverse log-det = -forward, in float64 (its
    layer kinds' log-dets are checked against the Jacobian by the other specs and the layer contract)."""
    from flowspec.compile.check import narrow_spec

    torch.manual_seed(0)
    model = flowspec.compile(narrow_spec(flowspec.load_spec(path), 4)).double()
    x = torch.randn(2, *model.input_shape, dtype=torch.float64)
    with torch.no_grad():
        model.train()
        model.log_prob(x)  # actnorm's data-dependent init
        model.eval()
        zs, logdet = model(x)
        x_back, inverse_logdet = model.inverse(zs)
    assert (x_back - x).abs().max().item() < 1e-8
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-10, atol=1e-8)
