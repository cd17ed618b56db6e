"""The hierarchical VAE (``model: hvae``, Kingma et al. 2016, openai/iaf): the masked-conv IAF is
autoregressive over a feature map's pixels and channels and exact as a flow (float64); the bounds
are ordered and free bits are the objective they claim; sampling, latents, init, export, check,
report and every verb on tiny models; spec errors name their YAML line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import FlowSpecError
from flowspec.hvae.build import hvae_build_rows
from flowspec.hvae.check import check_hvae
from flowspec.hvae.export import export_sampler
from flowspec.hvae.graph import build_hvae_graph
from flowspec.hvae.model import HVAEModel
from flowspec.hvae.networks import ConvIAFStep
from flowspec.layers.autoregressive import AutoregressiveLayer
from flowspec.layers.masked_conv import MaskedConvConditioner, spatial_degrees
from flowspec.layers.weightnorm import data_init
from flowspec.report import report_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"

TINY = """\
name: tiny-hvae
model: hvae
input: {shape: [1, 4, 4], levels: 5}
latent: 2
hidden: 4
blocks: [1, 1]
kl_min: 0.1
training: {data: digits, steps: 2, batch_size: 8}
"""

#: openai/iaf's count for its CIFAR-10 model (depth=1, num_blocks=20, z_size 32, h_size 160), from
#: tf_train.py and tf_utils/layers.py as the spec's comment adds it up
OPENAI_IAF_CIFAR_PARAMS = 41_557_927


def tiny(text: str = TINY, **update) -> HVAEModel:
    spec = flowspec.loads_spec(text)
    if update:
        spec = spec.model_copy(update=update)
    torch.manual_seed(0)
    return flowspec.compile(spec)


def levels(model, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, model.levels, (n, *model.input_shape), generator=torch.Generator().manual_seed(seed)).float()


def _perturbed(module, scale: float = 0.3):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return module


@pytest.mark.parametrize("context", [5, 6], ids=["projected context", "direct context"])
@pytest.mark.parametrize("kernel", [1, 3])
def test_masked_conv_is_strictly_triangular_over_pixels_and_channels(kernel, context):
    torch.manual_seed(0)
    channels, height, width = 3, 3, 3
    degrees = spatial_degrees(torch.tensor([2, 3, 1]), height, width)
    net = _perturbed(MaskedConvConditioner(hidden=6, depth=2, kernel=kernel).build(channels, 2, context, degrees).double())
    z = torch.randn(1, channels, height, width, dtype=torch.float64)
    h = torch.randn(1, context, height, width, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: net(v.view_as(z), h).flatten(1), z.flatten())
    order = torch.argsort(degrees.flatten())
    for head in jacobian.view(2, -1, order.numel()):
        in_order = head[order][:, order]
        assert torch.count_nonzero(torch.triu(in_order)) == 0, "an output reads its own or a later variable"
        assert torch.count_nonzero(torch.tril(in_order, -1)) > 0
    assert MaskedConvConditioner(hidden=6, depth=2, kernel=kernel).cost(channels, 2, context).params == \
        sum(p.numel() for p in net.parameters())


def test_masked_conv_refuses_degrees_that_are_not_its_order():
    with pytest.raises(ValueError, match="spatial_degrees"):
        MaskedConvConditioner(hidden=4).build(2, 2, 0, torch.randperm(8).view(2, 2, 2) + 1)


def test_the_iaf_step_on_a_feature_map_is_an_exact_flow_in_float64():
    torch.manual_seed(1)
    step = _perturbed(ConvIAFStep(3, (2, 3), context=4, hidden=6, depth=2, kernel=3).double())
    assert isinstance(step.flow.layer, AutoregressiveLayer)
    z = torch.randn(2, 3, 2, 3, dtype=torch.float64)
    c = torch.randn(2, 4, 2, 3, dtype=torch.float64)
    y, logdet = step(z, c)
    back, inverse_logdet = step.inverse(y, c)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inverse_logdet, -logdet)
    for i in range(2):
        jacobian = torch.autograd.functional.jacobian(lambda v: step(v.view(1, 3, 2, 3), c[i:i + 1])[0].flatten(),
                                                      z[i].flatten())
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jacobian)[1])
    entries = step.entries(z, c)[1]
    torch.testing.assert_close(entries.flatten(1).sum(1), logdet)


def test_check_passes_on_the_shipped_specs_narrow_copies():
    for name in ("iaf-vae-digits", "iaf-vae-cifar"):
        result = check_hvae(flowspec.load_spec(SPECS / f"{name}.yaml"))
        assert result.ok, result
        assert result.triangular_error == 0.0


def test_the_report_counts_openai_iafs_parameters_for_the_cifar_spec():
    report = report_spec(flowspec.load_spec(SPECS / "iaf-vae-cifar.yaml"), "a100", 16)
    assert report.params == OPENAI_IAF_CIFAR_PARAMS
    assert {row.name for row in report.rows} == {"bottom-up", "top-down", "iaf", "decoder", "likelihood"}


@pytest.mark.parametrize("update", [{}, {"posterior": {"kind": "diagonal"}}, {"scale": "per_entry"},
                                    {"stem": {"kernel": 3, "stride": 2}, "blocks": [2, 1], "hidden": 5,
                                     "posterior": {"hidden": 3, "depth": 1}}],
                         ids=["iaf", "diagonal", "per-entry scale", "strided, iaf width apart"])
def test_report_and_build_rows_count_the_modules_parameters(update):
    data = {**yaml.safe_load(TINY.replace("input: {shape: [1, 4, 4]", "input: {shape: [1, 8, 8]")), **update}
    spec = flowspec.loads_spec(yaml.safe_dump(data))
    graph = build_hvae_graph(spec)
    model = HVAEModel(graph)
    total = sum(p.numel() for p in model.parameters())
    assert report_spec(spec, "a100", 4).params == total
    rows = hvae_build_rows(graph, model)
    assert sum(row.params for row in rows) == total
    assert ("iaf" in {row.name for row in rows}) == spec.iaf


def test_importance_weighting_tightens_the_bound_on_the_same_draws():
    model = tiny()
    x = levels(model, 6)
    model.initialize(x)
    torch.manual_seed(3)
    w = model.log_weights(x, 16)
    assert w.shape == (6, 16)
    iw = torch.logsumexp(w, 1) - math.log(16)
    assert torch.all(iw >= w.mean(1))  # Jensen, draw by draw
    torch.manual_seed(4)
    one = model.bits_per_dim(x)
    torch.manual_seed(4)
    torch.testing.assert_close(one, -model.log_weights(x, 1)[:, 0] / (model.dims * math.log(2)))


def test_importance_weights_come_in_chunks_with_the_bottom_up_pass_once(monkeypatch):
    import flowspec.hvae.model as module

    model = tiny()
    x = levels(model, 3)
    monkeypatch.setattr(module, "MAX_ROWS", 4)  # one draw of 3 examples per chunk
    calls = []
    model.stem.register_forward_hook(lambda *args: calls.append(1))
    w = model.log_weights(x, 7)
    assert w.shape == (3, 7) and torch.isfinite(w).all() and len(calls) == 1


def test_free_bits_hold_channels_under_kl_min_at_kl_min_without_gradient():
    model = tiny(kl_min=50.0)  # every channel's KL is under 50 nats
    x = levels(model, 8)
    model.initialize(x)
    model.train()
    torch.manual_seed(5)
    log_px, kls, _ = model.posterior_pass(x)
    torch.manual_seed(5)
    objective = model.free_bits_objective(x)
    channels = sum(kl.shape[1] for kl in kls)
    torch.testing.assert_close(objective, -log_px + 50.0 * channels)
    # every channel held at kl_min: the gradient is the reconstruction's alone
    grads = torch.autograd.grad(objective.mean(), list(model.parameters()), allow_unused=True)
    torch.manual_seed(5)
    recon = torch.autograd.grad(-model.posterior_pass(x)[0].mean(), list(model.parameters()), allow_unused=True)
    for got, want in zip(grads, recon):
        if want is None:
            assert got is None or torch.count_nonzero(got) == 0
        else:
            torch.testing.assert_close(got, want)
    free = tiny(kl_min=0.0)
    free.initialize(x)
    free.train()
    torch.manual_seed(6)
    a = free.loss_per_dim(x)
    torch.manual_seed(6)
    torch.testing.assert_close(a, free.bits_per_dim(x))


def test_free_bits_count_the_batch_average_per_channel():
    model = tiny(kl_min=0.5)
    x = levels(model, 8)
    model.initialize(x)
    torch.manual_seed(7)
    log_px, kls, _ = model.posterior_pass(x)
    torch.manual_seed(7)
    objective = model.free_bits_objective(x)
    expected = -log_px.mean() + sum(kl.flatten(2).sum(2).mean(0).clamp(min=0.5).sum() for kl in kls)
    torch.testing.assert_close(objective.mean(), expected)


def test_sampling_takes_a_temperature_per_layer():
    model = tiny().eval()
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 4, 4) and x.min() >= 0 and x.max() <= 4
    cold = model.sample(2, temperature=[0.0, 0.0], generator=torch.Generator().manual_seed(1))
    assert torch.equal(cold, model.sample(2, temperature=0.0, generator=torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError, match="2 values"):
        model.sample(2, temperature=[1.0, 1.0, 1.0])


def test_encode_gives_every_layers_posterior_centre_and_decode_reconstructs():
    model = tiny().eval()
    x = levels(model, 4)
    latents = model.encode(x)
    assert [tuple(z.shape[1:]) for z in latents.zs] == [(2, 4, 4), (2, 2, 2)]
    torch.testing.assert_close(model.decode(latents), model.reconstruct(x))


def test_data_dependent_init_normalises_the_first_convs_output():
    model = tiny()
    x = levels(model, 16)
    with data_init(model):
        model.posterior_pass(x)
    out = model.stem(x * (2.0 / (model.levels - 1)) - 1.0)
    torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 2, 3), unbiased=False), torch.full((4,), 0.1), atol=1e-4, rtol=0)
    model.initialize(x)
    assert model.initialized


def test_exported_sampling_program_equals_the_model(tmp_path):
    model = tiny().eval()
    paths = export_sampler(model, tmp_path)  # checks the loaded program against the model
    assert paths["sample"].is_file()


SPEC_ERRORS = [
    ("blocks: [1, 1]", "blocks: [1, 1, 1, 1]", r"does not divide by 8", 6),
    ("kl_min: 0.1", "kl_min: 0.1\nlikelihood: categorical", r"scale: shared", 8),
    ("blocks: [1, 1]", "blocks: [1, 1]\nposterior: {hidden: 1}", r"fewer than latent", 7),
    ("blocks: [1, 1]", "blocks: [1, 1]\nstem: {kernel: 4}", r"kernel must be odd", 7),
    ("{shape: [1, 4, 4], levels: 5}", "{shape: [16], levels: 5}", r"feature maps", 3),
]


@pytest.mark.parametrize("old, new, message, line", SPEC_ERRORS, ids=["stride", "scale", "iaf width", "even kernel",
                                                                      "vector input"])
def test_a_bad_spec_is_one_located_error(tmp_path, old, new, message, line):
    path = tmp_path / "bad.yaml"
    path.write_text(TINY.replace(old, new))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ") or message in result.output
    assert f"bad.yaml:{line}" in result.output


@pytest.fixture(scope="module")
def tiny_spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hvae") / "tiny.yaml"
    path.write_text(TINY.replace("[1, 4, 4], levels: 5", "[1, 8, 8], levels: 17"))
    return path


def test_the_spec_verbs_run_on_a_tiny_spec(tiny_spec_file, tmp_path):
    runner = CliRunner()
    for args in (["validate", str(tiny_spec_file)], ["report", str(tiny_spec_file)], ["check", str(tiny_spec_file)],
                 ["render", str(tiny_spec_file), "--detail", "paper", "-o", str(tmp_path / "d.dot")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert '"iaf.0"' in (tmp_path / "d.dot").read_text()


def _trained(spec_file, tmp_path) -> Path:
    result = CliRunner().invoke(app, ["train", str(spec_file), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    return tmp_path / "run" / "last.pt"


def test_train_then_eval_with_k(tiny_spec_file, tmp_path):
    run = _trained(tiny_spec_file, tmp_path)
    result = CliRunner().invoke(app, ["eval", str(run), "-k", "4"])
    assert result.exit_code == 0, result.output
    assert "bits/dim" in result.output


@pytest.mark.slow
def test_every_verb_on_a_trained_tiny_model(tiny_spec_file, tmp_path):
    run = _trained(tiny_spec_file, tmp_path)
    for args in (["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")],
                 ["encode", str(run), "0", "1", "2", "-o", str(tmp_path / "z.npz")],
                 ["decode", str(run), str(tmp_path / "z.npz"), "-o", str(tmp_path / "r.png")],
                 ["interpolate", str(run), "0", "1", "--steps", "3", "-o", str(tmp_path / "i.png")],
                 ["manipulate", str(run), "0", "--toward", "3", "--away", "8", "-o", str(tmp_path / "m.png")],
                 ["export", str(run), "-f", "pt2", "-o", str(tmp_path / "pt2")],
                 ["export", str(run), "-f", "safetensors", "-o", str(tmp_path / "m.safetensors")]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert (tmp_path / "pt2" / "sample.pt2").is_file()


def test_the_ladder_is_drawn_with_one_layer_per_repeated_block(tmp_path):
    from flowspec.render import to_dot

    graph = build_hvae_graph(flowspec.load_spec(SPECS / "iaf-vae-cifar.yaml"))
    dot = to_dot(graph, detail="paper")
    assert dot.count('label="× 20"') == 2  # the bottom-up and the top-down blocks, each drawn once
    iaf_nodes = [line for line in dot.splitlines() if line.strip().startswith('"iaf.') and '->' not in line]
    assert len(iaf_nodes) == 1


def test_flowspec_errors_are_raised_for_a_wrong_condition():
    model = tiny()
    with pytest.raises(FlowSpecError):
        model.log_prob(levels(model, 2), condition=torch.zeros(2))


def _zero_iaf_outputs(model: HVAEModel) -> None:
    with torch.no_grad():
        for block in model.down:
            block.iaf.conditioner.out.g.zero_()
            block.iaf.conditioner.out.bias.zero_()


def test_an_iaf_with_zero_output_is_the_diagonal_posterior_draw_for_draw():
    model = tiny().double()
    x = levels(model, 5)
    model.initialize(x)
    _perturbed(model, 0.1)
    diagonal = tiny(posterior=model.spec.posterior.model_copy(update={"kind": "diagonal"})).double()
    shared = {key: value for key, value in model.state_dict().items() if ".iaf." not in key}
    diagonal.load_state_dict(shared)
    _zero_iaf_outputs(model)
    eps = [torch.randn(5, *shape, dtype=torch.float64) for shape in model.latent_shapes]
    log_px, kls, zs = model.posterior_pass(x, eps=eps)
    want_px, want_kls, want_zs = diagonal.posterior_pass(x, eps=eps)
    torch.testing.assert_close(log_px, want_px)
    for got, want in zip(kls + zs, want_kls + want_zs):
        torch.testing.assert_close(got, want)


def test_the_log_weight_is_the_joint_over_the_posterior_at_the_iaf_output():
    """``w = log p(x | z) + sum_l log p(z_l | z_>l) - log q(z_l | x, z_>l)`` at the z the IAF
    returns, with ``log q`` by the change of variables through the IAF's inverse:
    ``log q(z') = log N(iaf^-1(z'); mean, sd) + log |det d iaf^-1 / dz'|``."""
    model = _perturbed(tiny().double(), 0.2)
    x = levels(model, 4).double()
    torch.manual_seed(8)
    log_px, kls, zs = model.posterior_pass(x)
    w = log_px - sum(kl.flatten(1).sum(1) for kl in kls)
    up = model.bottom_up(x)
    joint = []

    def gaussian(z, mean, logsd):
        return torch.distributions.Normal(mean, logsd.exp()).log_prob(z)

    def replay(index, block, params):
        pz_mean, pz_logsd, rz_mean, rz_logsd, down_context, _ = params
        qz_mean, qz_logsd, up_context = up[index]
        base, inverse_logdet = block.iaf.inverse(zs[index], up_context + down_context)
        log_q = gaussian(base, rz_mean + qz_mean, rz_logsd + qz_logsd).flatten(1).sum(1) + inverse_logdet
        joint.append(gaussian(zs[index], pz_mean, pz_logsd).flatten(1).sum(1) - log_q)
        return zs[index]

    params = model.top_down(4, replay)
    want = model.likelihood.log_prob(params, x, model.levels) + sum(joint)
    torch.testing.assert_close(w, want)
    torch.manual_seed(8)
    torch.testing.assert_close(model.log_weights(x, 1)[:, 0], w)


def test_the_iw_bound_with_one_draw_is_an_unbiased_elbo_and_k_draws_tighten_it():
    model = _perturbed(tiny().double(), 0.2)
    x = levels(model, 3)
    torch.manual_seed(9)
    w = model.log_weights(x, 2048)
    torch.manual_seed(10)
    one_draw = torch.stack([model.iw_log_likelihood(x, 1) for _ in range(256)])
    elbo = w.mean(1)  # standard error of the 256-draw mean: std / 16
    torch.testing.assert_close(one_draw.mean(0), elbo, atol=4 * (w.std(1) / 16).max().item(), rtol=0)
    bounds = [torch.logsumexp(w.view(3, -1, k), 2).mean(1) - math.log(k) for k in (1, 4, 64)]
    assert torch.all(bounds[0] < bounds[1]) and torch.all(bounds[1] < bounds[2])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_free_bits_enter_the_training_objective_only(mode):
    held, free = tiny(kl_min=50.0), tiny(kl_min=0.0)
    x = levels(held, 6)
    held.initialize(x)
    free.load_state_dict(held.state_dict())
    held.train(mode == "train")
    free.train(mode == "train")
    for k in (1, 8):
        torch.manual_seed(10)
        a = held.bits_per_dim(x, k=k)
        torch.manual_seed(10)
        torch.testing.assert_close(a, free.bits_per_dim(x, k=k))
    torch.manual_seed(11)
    objective = held.loss_per_dim(x)
    torch.manual_seed(11)
    bound = held.bits_per_dim(x)
    if mode == "train":
        assert torch.all(objective > bound)  # 50 free nats per channel
    else:
        torch.testing.assert_close(objective, bound)
