"""Latent tools (flowspec.compile.latents) on narrow float32 copies of every shipped flow spec:
exact round trip decode(encode(x)) == x with split latents, interpolation ends, attribute
directions and manipulation, files and the errors for latents of another flow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import flowspec
from flowspec.compile.check import narrow_spec
from flowspec.compile.latents import (Direction, Latents, attribute_direction, check_latents, decode, encode,
                                      interpolate, manipulate, round_trip_error, spec_fingerprint)
from flowspec.errors import DataError, FlowSpecError

SPECS = sorted(path for path in (Path(__file__).resolve().parent.parent / "specs").glob("*.yaml")
               if yaml.safe_load(path.read_text()).get("model", "flow") == "flow"
               and "condition" not in yaml.safe_load(path.read_text())  # conditional: refused, tested below
               and yaml.safe_load(path.read_text())["input"].get("data") != "continuous")  # real values: refused

LOGIT = """\
name: logit-glow
input: {shape: [1, 8, 8], levels: 256}
preprocess: {kind: logit, alpha: 0.05}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""

VECTOR = """\
name: tiny-nice
input: {shape: [16], levels: 17}
prior: logistic
layers:
  - {kind: coupling, transform: additive, parity: 0, conditioner: {kind: mlp, hidden: [8]}}
  - {kind: coupling, transform: additive, parity: 1, conditioner: {kind: mlp, hidden: [8]}}
  - {kind: split}
  - scaling
"""


def perturbed(spec, seed: int = 0) -> flowspec.FlowModel:
    """A float32 model of ``spec`` moved away from its identity init, actnorm initialised on data
    (the noise shrinks as 1/sqrt(depth) past 16 layers, as in ``flowspec check``)."""
    torch.manual_seed(seed)
    model = flowspec.compile(spec)
    noise = 0.05 * min(1.0, (16 / len(model.layers)) ** 0.5)
    with torch.no_grad():
        model.initialize(integers(model, 16, seed + 1))
        for parameter in model.parameters():
            parameter.add_(noise * torch.randn_like(parameter))
    return model.eval()


def integers(model, n: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.levels, (n, *model.input_shape), generator=generator).float()


@pytest.fixture(scope="module")
def glow() -> flowspec.FlowModel:
    return perturbed(narrow_spec(flowspec.load_spec(Path(__file__).resolve().parent.parent / "specs/glow-digits.yaml"), 8))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_round_trip_is_exact_on_every_shipped_flow(path):
    model = perturbed(narrow_spec(flowspec.load_spec(path), width=4))
    x = integers(model, 3)
    latents = model.encode(x)
    assert latents.shapes == [tuple(shape) for shape in model.latent_shapes]
    assert latents.log_density.shape == (3,) and torch.isfinite(latents.log_density).all()
    back = model.decode(latents)
    assert back.dtype == torch.float32 and torch.equal(back, x), (back - x).abs().max()
    data_error, continuous_error = round_trip_error(model, x, latents)
    assert data_error == 0.0 and continuous_error < 1e-2


def test_round_trip_keeps_split_latents_and_logit_preprocessing():
    for text in (LOGIT, VECTOR):
        model = perturbed(flowspec.loads_spec(text))
        x = integers(model, 5)
        latents = encode(model, x)
        assert len(latents.zs) == 2  # the factored latent is kept, not resampled
        assert torch.equal(decode(model, latents), x)


def test_the_bin_centre_is_encoded_and_the_continuous_value_comes_back(glow):
    x = integers(glow, 4)
    latents = glow.encode(x)
    y, scale_logdet = glow.to_model_space(x + 0.5)
    zs, _ = glow(y)
    for z, expected in zip(latents.zs, zs):
        torch.testing.assert_close(z, expected)
    torch.testing.assert_close(latents.log_density, glow.log_prob(y) + scale_logdet)
    v = glow.decode(latents, continuous=True)
    assert (v - (x + 0.5)).abs().max() < 1e-3


def test_encode_in_chunks_matches_one_batch_and_reports_progress(glow):
    x = integers(glow, 7)
    seen = []
    chunked = encode(glow, x, batch_size=3, progress=seen.append)
    whole = encode(glow, x)
    assert seen == [3, 3, 1]
    for a, b in zip(chunked.zs, whole.zs):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(chunked.log_density, whole.log_density)


def test_encode_leaves_the_model_mode_and_actnorm_alone():
    model = flowspec.compile(narrow_spec(flowspec.load_spec(SPECS[0]), 4))
    model.train()
    x = integers(model, 2)
    encode(model, x)
    assert model.training and not model.initialized


@pytest.mark.parametrize("method", ["linear", "spherical"])
def test_interpolation_ends_reproduce_a_and_b(glow, method):
    x = integers(glow, 4)
    latents = glow.encode(x)
    a, b = latents.select([0, 1]), latents.select([2, 3])
    path = interpolate(a, b, steps=5, method=method)
    assert len(path) == 10 and path.log_density is None
    images = glow.decode(path).view(2, 5, *glow.input_shape)
    assert torch.equal(images[:, 0], x[:2]) and torch.equal(images[:, -1], x[2:])
    assert not torch.equal(images[:, 2], images[:, 0])  # the middle moves


def test_spherical_interpolation_keeps_the_norm_between_equal_norm_ends():
    a = Latents([torch.tensor([[3.0, 0.0]])], "s", "f")
    b = Latents([torch.tensor([[0.0, 3.0]])], "s", "f")
    path = interpolate(a, b, steps=5, method="spherical").zs[0]
    torch.testing.assert_close(path.norm(dim=1), torch.full((5,), 3.0))
    linear = interpolate(a, b, steps=5).zs[0]
    assert linear.norm(dim=1)[2] < 3.0 - 0.5  # linear cuts the corner
    same = interpolate(a, a, steps=3, method="spherical").zs[0]  # angle 0: falls back to linear
    assert torch.isfinite(same).all() and torch.equal(same, a.zs[0].expand(3, 2))


def test_top_only_holds_factored_latents_of_a(glow):
    x = integers(glow, 2)
    latents = glow.encode(x)
    a, b = latents.select(0), latents.select(1)
    path = interpolate(a, b, steps=4, top_only=True)
    assert torch.equal(path.top[-1], b.top[0]) and torch.equal(path.top[0], a.top[0])
    for z, za in zip(path.zs[:-1], a.zs[:-1]):
        assert torch.equal(z, za.expand_as(z))
    assert torch.equal(glow.decode(path.select(0)), x[:1])


def test_top_only_with_redrawn_factored_latents_keeps_the_top(glow):
    latents = glow.encode(integers(glow, 2))
    path = interpolate(latents.select(0), latents.select(1), steps=3, top_only=True)
    v = glow.decode(path, continuous=True, temperature=0.7, generator=torch.Generator().manual_seed(0))
    zs, _ = glow(glow.to_model_space(v)[0])
    torch.testing.assert_close(zs[-1], path.top, rtol=1e-4, atol=1e-4)
    assert (zs[0] - path.zs[0]).abs().max() > 1e-2  # the factored latent was redrawn
    cold = [glow.decode(path, temperature=0.0, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)]
    assert torch.equal(cold[0], cold[1])


def test_direction_of_identical_groups_is_zero_and_strength_zero_is_the_input(glow):
    x = integers(glow, 6)
    latents = glow.encode(x)
    group = latents.select([0, 1, 2])
    zero = attribute_direction(group, group)
    assert all(torch.equal(v, torch.zeros_like(v)) for v in zero.vs) and zero.norm() == 0.0
    direction = attribute_direction(latents.select([0, 1, 2]), latents.select([3, 4, 5]), "a", "b")
    assert direction.counts == (3, 3) and direction.norm() > 0
    expected = latents.zs[-1][:3].mean(0) - latents.zs[-1][3:].mean(0)
    torch.testing.assert_close(direction.vs[-1][0], expected)
    moved = manipulate(latents.select([0, 1]), direction, [-1.0, 0.0, 0.5])
    assert len(moved) == 6
    images = glow.decode(moved).view(2, 3, *glow.input_shape)
    assert torch.equal(images[:, 1], x[:2])
    torch.testing.assert_close(moved.top[2] - moved.top[1], 0.5 * direction.vs[-1][0])


def test_latents_and_directions_survive_their_files(glow, tmp_path):
    x = integers(glow, 3)
    latents = glow.encode(x)
    loaded = Latents.load(latents.save(tmp_path / "z.npz"))
    assert loaded.fingerprint == latents.fingerprint and loaded.spec_name == latents.spec_name
    assert torch.equal(glow.decode(loaded), x)
    torch.testing.assert_close(loaded.log_density, latents.log_density)
    direction = attribute_direction(latents.select([0]), latents.select([1]), "8", "3")
    again = Direction.load(direction.save(tmp_path / "d.npz"))
    assert (again.toward, again.away, again.counts) == ("8", "3", (1, 1))
    assert all(torch.equal(a, b) for a, b in zip(again.vs, direction.vs))
    with pytest.raises(DataError, match="not a direction"):
        Direction.load(tmp_path / "z.npz")
    with pytest.raises(DataError, match="no such file"):
        Latents.load(tmp_path / "missing.npz")


def test_fingerprint_survives_save_and_load_but_tells_specs_apart(glow, tmp_path):
    flowspec.save_model(glow, tmp_path / "m.pt")
    assert spec_fingerprint(flowspec.load_model(tmp_path / "m.pt")) == spec_fingerprint(glow)
    renamed = flowspec.compile(flowspec.loads_spec(LOGIT.replace("name: logit-glow", "name: copy")))
    assert spec_fingerprint(renamed) == spec_fingerprint(flowspec.compile(flowspec.loads_spec(LOGIT)))
    vardeq = LOGIT + "dequantization: {kind: variational, steps: 1, hidden: 4, context: {hidden: 4, depth: 1}}\n"
    assert spec_fingerprint(flowspec.compile(flowspec.loads_spec(vardeq))) != spec_fingerprint(renamed)
    other = perturbed(flowspec.loads_spec(LOGIT.replace("levels: 256", "levels: 17")))
    assert spec_fingerprint(other) != spec_fingerprint(glow)
    latents = other.encode(integers(other, 1))
    with pytest.raises(DataError, match="latents of spec 'logit-glow'.*this model's spec is 'glow-digits'"):
        glow.decode(latents)
    with pytest.raises(DataError, match="latent shapes"):
        check_latents(glow, Latents([torch.zeros(1, 3)], "glow-digits", spec_fingerprint(glow)))
    with pytest.raises(DataError, match="interpolate: end latents of spec 'logit-glow'.*the start's spec is 'glow-digits'"):
        interpolate(glow.encode(integers(glow, 1)), latents)
    with pytest.raises(DataError, match="a direction of spec"):
        manipulate(glow.encode(integers(glow, 1)), attribute_direction(latents, latents), [1.0])


def test_bad_data_and_arguments_are_named(glow):
    shape = tuple(glow.input_shape)
    with pytest.raises(DataError, match=rf"shape \[1, 3, 3\], the spec's input.shape is \[{', '.join(map(str, shape))}\]"):
        glow.encode(torch.zeros(1, 1, 3, 3))
    with pytest.raises(DataError, match="values span 0..17"):
        glow.encode(torch.full((1, *shape), 17.0).index_fill_(2, torch.tensor([0]), 0.0))
    with pytest.raises(DataError, match="integers 0..16"):
        glow.encode(torch.full((1, *shape), 0.5))
    latents = glow.encode(integers(glow, 2))
    with pytest.raises(FlowSpecError, match="unknown interpolation 'cubic'"):
        interpolate(latents.select(0), latents.select(1), method="cubic")
    with pytest.raises(FlowSpecError, match="at least 2 steps"):
        interpolate(latents.select(0), latents.select(1), steps=1)
    with pytest.raises(FlowSpecError, match="1 start latents and 2 end latents"):
        interpolate(latents.select(0), latents)


def test_a_vae_encodes_its_posterior_centre_and_decodes_its_most_likely_levels():
    torch.manual_seed(0)
    vae = flowspec.compile(flowspec.load_spec(Path(__file__).resolve().parent.parent / "specs/vae-iaf-digits.yaml"))
    vae.eval()
    x = integers(vae, 4)
    latents = encode(vae, x)
    assert latents.shapes == [(16,)] and latents.log_density is None
    assert torch.equal(decode(vae, latents), vae.reconstruct(x))  # the posterior's centre, eps = 0
    path = decode(vae, interpolate(latents.select([0]), latents.select([1]), steps=3, method="spherical"))
    assert torch.equal(path[[0, 2]], vae.reconstruct(x[:2]))
    direction = attribute_direction(latents.select([0, 1]), latents.select([2, 3]))
    assert torch.equal(decode(vae, manipulate(latents, direction, [0.0])), vae.reconstruct(x))
    with pytest.raises(FlowSpecError, match="before flooring works on flow specs; this is a model: vae spec"):
        decode(vae, latents, continuous=True)
    assert round_trip_error(vae, x, latents)[1] is None
    glow = perturbed(narrow_spec(flowspec.load_spec(SPECS[0]), 4))
    with pytest.raises(DataError, match="latents of spec 'vae-iaf-digits'"):
        decode(glow, latents)


def test_conditional_and_continuous_models_are_refused_in_one_line():
    root = Path(__file__).resolve().parent.parent / "specs"
    conditional = flowspec.compile(flowspec.load_spec(root / "glow-digits-cond.yaml"))
    with pytest.raises(FlowSpecError, match=r"latent tools work on unconditional models; .*condition: \{kind: class\}"):
        conditional.encode(torch.zeros(1, 1, 8, 8))
    continuous = flowspec.compile(flowspec.loads_spec("input: {shape: [2], data: continuous}\nlayers: [scaling]\n"))
    with pytest.raises(FlowSpecError, match="input.data is continuous"):
        continuous.encode(torch.zeros(1, 2))
