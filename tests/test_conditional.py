"""Conditional flows p(x | c): couplings that see the condition, conditional priors, sampling through
the requested condition, and one clear error for every malformed condition."""

from __future__ import annotations

import math

import pytest
import torch

from flowspec import SpecError, build_graph, compile, loads_spec
from flowspec.errors import ConditionError
from flowspec.layers.split import Split
from flowspec.priors import TopPrior

VECTOR_SPEC = """
input: {shape: [4], data: continuous}
condition: {kind: class, classes: 3, embed: 5}
prior: learned
layers:
  - {kind: actnorm}
  - {kind: coupling, transform: {kind: affine, scale: exp}, mask: channel, parity: 0, conditioner: {kind: mlp, hidden: [8]}}
  - {kind: split}
  - {kind: coupling, transform: {kind: affine, scale: exp}, mask: channel, parity: 1, conditioner: {kind: mlp, hidden: [8]}}
"""

IMAGE_SPEC = """
input: {shape: [1, 4, 4], levels: 17}
condition: {kind: vector, dim: 2, hidden: [6]}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""


def perturbed(spec_text: str, seed: int = 0):
    torch.manual_seed(seed)
    model = compile(loads_spec(spec_text)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model.eval()


def flat_latents(model, x, c):
    zs, _ = model(x, c)
    return torch.cat([z.flatten(1) for z in zs], dim=1)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_conditional_coupling_round_trip_and_logdet_for_every_class(label):
    model = perturbed(VECTOR_SPEC)
    x = torch.randn(3, 4, dtype=torch.float64)
    c = torch.full((3,), label)
    zs, logdet = model(x, c)
    back, inverse_logdet = model.inverse(zs, c)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-10, rtol=0)
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(
            lambda v: flat_latents(model, v.view(1, 4), c[i:i + 1]).flatten(), x[i])
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jacobian)[1], atol=1e-9, rtol=0)


def test_conditional_coupling_output_changes_with_the_condition():
    model = perturbed(VECTOR_SPEC)
    x = torch.randn(5, 4, dtype=torch.float64)
    coupling = model.layers[1]
    h = [model.features(torch.full((5,), k), 5, x) for k in range(3)]
    outputs = [coupling(x, context)[0] for context in h]
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])
    # the conditioning half passes unchanged; the transformed half moved
    torch.testing.assert_close(outputs[0][:, 2:], outputs[1][:, 2:])


def test_conditional_image_model_round_trip_for_vector_contexts():
    model = perturbed(IMAGE_SPEC)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    for context in (torch.zeros(2, 2), torch.randn(2, 2)):
        zs, logdet = model(x, context.double())
        back, inverse_logdet = model.inverse(zs, context.double())
        torch.testing.assert_close(back, x, atol=1e-9, rtol=0)
        torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-9, rtol=0)
    a = model.log_prob(x, condition=torch.zeros(2, 2, dtype=torch.float64))
    b = model.log_prob(x, condition=torch.ones(2, 2, dtype=torch.float64))
    assert not torch.allclose(a, b)


def normal_log_density(z, mean, log_std):
    return (-0.5 * ((z - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def test_class_conditional_top_prior_matches_the_normal_formula():
    torch.manual_seed(1)
    prior = TopPrior((3, 2, 2), "learned", context=4).double()
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.copy_(torch.randn_like(parameter))
    h = torch.randn(5, 4, dtype=torch.float64)
    z = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    shift = (h @ prior.context_net.weight.T).view(5, 2, 3, 2, 2)
    expected = normal_log_density(z, prior.mean + shift[:, 0], prior.log_std + shift[:, 1])
    torch.testing.assert_close(prior.log_prob(z, h), expected)
    # temperature 0 draws the condition-dependent mean
    torch.testing.assert_close(prior.generate(torch.randn_like(z), 0.0, h), (prior.mean + shift[:, 0]).expand_as(z))


def test_class_conditional_split_prior_matches_the_normal_formula():
    torch.manual_seed(2)
    split = Split((4, 2, 2), "conditional", context=3).double()
    with torch.no_grad():
        for parameter in split.parameters():
            parameter.copy_(torch.randn_like(parameter))
    kept, factored = torch.randn(2, 2, 2, 2, dtype=torch.float64), torch.randn(2, 2, 2, 2, dtype=torch.float64)
    h = torch.randn(2, 3, dtype=torch.float64)
    params = split.prior_net(kept) + split.context_net(h).view(2, 4, 1, 1)
    mean, log_std = params.chunk(2, dim=1)
    torch.testing.assert_close(split.log_prob(kept, factored, h), normal_log_density(factored, mean, log_std))


def test_model_log_prob_of_a_class_is_the_sum_of_its_parts():
    """Through the model: the class's embedding reaches the top prior (its log-density under class
    k differs from class j) and log p = log p(z | c) + logdet."""
    model = perturbed(VECTOR_SPEC)
    x = torch.randn(4, 4, dtype=torch.float64)
    c = torch.tensor([0, 1, 2, 0])
    zs, logdet = model(x, c)
    h = model.features(c, 4, x)
    expected = model.layers[2].log_prob(*model.layers[2].split(model.layers[1](model.layers[0](x)[0], h)[0]), h)
    expected = expected + model.top_prior.log_prob(zs[-1], h) + logdet
    torch.testing.assert_close(model.log_prob(x, condition=c), expected)


@pytest.mark.parametrize("label", [0, 2])
def test_a_sample_for_class_k_is_generated_through_condition_k(label):
    model = perturbed(VECTOR_SPEC)
    seen = []
    model.condition.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    samples = model.sample(6, temperature=0.8, generator=torch.Generator().manual_seed(0), condition=label)
    assert len(seen) == 1 and seen[0].tolist() == [label] * 6
    # the same noise through generate with condition k gives the same samples; another class does not
    generator = torch.Generator().manual_seed(0)
    eps = [torch.randn((6, *shape), generator=generator, dtype=torch.float64) for shape in model.latent_shapes]
    torch.testing.assert_close(samples, model.generate(eps, 0.8, torch.full((6,), label)))
    assert not torch.allclose(samples, model.generate(eps, 0.8, torch.full((6,), 1)))


def test_bits_per_dim_takes_the_condition_on_discrete_data():
    torch.manual_seed(0)
    model = compile(loads_spec(IMAGE_SPEC))
    x = torch.randint(0, 17, (3, 1, 4, 4)).float()
    c = torch.randn(3, 2)
    model.initialize(x, condition=c)
    assert model.bits_per_dim(x, condition=c).shape == (3,)
    assert model.bits_per_dim(x, condition=c, k=4).shape == (3,)
    assert model.sample(2, condition=torch.randn(2)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: m.log_prob(x), "this model is conditional .*classes: 3.*pass labels"),
    (lambda m, x: m.log_prob(x, condition=torch.tensor([0, 1, 3])), "label 3 is outside 0..2"),
    (lambda m, x: m.log_prob(x, condition=torch.tensor([0, -1, 1])), "label -1 is outside 0..2"),
    (lambda m, x: m.log_prob(x, condition=torch.tensor([0.0, 1.0, 1.0])), "class labels must be integers"),
    (lambda m, x: m.log_prob(x, condition=torch.tensor([[0], [1], [1]])), r"shape \(batch,\)"),
    (lambda m, x: m.log_prob(x, condition=torch.tensor([0, 1])), "2 conditions for a batch of 3"),
    (lambda m, x: m.sample(2), "this model is conditional"),
])
def test_a_malformed_class_condition_is_one_clear_error(call, message):
    model = perturbed(VECTOR_SPEC)
    with pytest.raises(ConditionError, match=message):
        call(model, torch.randn(3, 4, dtype=torch.float64))


def test_a_malformed_context_and_an_unexpected_condition_are_clear_errors():
    model = compile(loads_spec(IMAGE_SPEC))
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ConditionError, match=r"contexts must have shape \(batch, 2\), got \(2, 3\)"):
        model.log_prob(x, condition=torch.randn(2, 3))
    with pytest.raises(ConditionError, match="NaN or inf"):
        model.log_prob(x, condition=torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    plain = compile(loads_spec(IMAGE_SPEC.replace("condition: {kind: vector, dim: 2, hidden: [6]}\n", "")))
    with pytest.raises(ConditionError, match="unconditional"):
        plain.log_prob(x, condition=torch.randn(2, 2))
    assert issubclass(ConditionError, ValueError)


@pytest.mark.parametrize("condition, message", [
    ("{kind: class, classes: 1}", "condition.classes: Input should be greater than or equal to 2"),
    ("{kind: class}", "condition.classes: missing field 'classes'"),
    ("{kind: class, classes: 3, embed: 0}", "condition.embed: Input should be greater than 0"),
    ("{kind: vector}", "condition.dim: missing field 'dim'"),
    ("{kind: vector, dim: 2, hidden: [0]}", "condition.hidden[0]: Input should be greater than 0"),
    ("{kind: vector, dim: 2, prior: yes}", "condition.prior"),
    ("{kind: label, classes: 3}", "condition.kind: unknown kind 'label' (hint: known: class, vector)"),
    ("{kind: class, classes: 3, size: 4}", "condition.size: unknown field 'size'"),
])
def test_bad_condition_fields_are_refused_with_their_line(condition, message):
    text = VECTOR_SPEC.replace("{kind: class, classes: 3, embed: 5}", condition)
    with pytest.raises(SpecError) as error:
        loads_spec(text)
    assert str(error.value).startswith("<spec>:3:")  # the condition's line
    assert message in str(error.value)


def test_a_logistic_top_prior_cannot_be_conditional():
    with pytest.raises(SpecError, match="logistic top prior has no mean and scale"):
        loads_spec(VECTOR_SPEC.replace("prior: learned", "prior: logistic"))
    plain = loads_spec(VECTOR_SPEC.replace("prior: learned", "prior: logistic")
                       .replace("embed: 5}", "embed: 5, prior: plain}"))
    assert plain.condition.prior == "plain"


def test_the_graph_draws_a_condition_node_with_edges_to_the_layers_that_read_it():
    graph = build_graph(loads_spec(VECTOR_SPEC)).graph
    readers = sorted(b for a, b, d in graph.edges(data=True) if a == "condition")
    assert readers == ["1.coupling", "2.split", "3.coupling", "prior"]  # actnorm does not read it
    assert all(d["shape"] == (5,) for a, _, d in graph.edges(data=True) if a == "condition")
    plain = build_graph(loads_spec(VECTOR_SPEC.replace("embed: 5}", "embed: 5, prior: plain}"))).graph
    assert sorted(b for a, b in plain.edges if a == "condition") == ["1.coupling", "3.coupling"]


@pytest.mark.parametrize("spec_text", [VECTOR_SPEC, IMAGE_SPEC, VECTOR_SPEC.replace("embed: 5}", "embed: 5, prior: plain}")])
def test_report_counts_the_embedding_and_the_context(spec_text):
    from flowspec.report import cost_report, load_devices

    graph = build_graph(loads_spec(spec_text))
    report = cost_report(graph, load_devices()["a100"], 8)
    model = compile(graph)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert any(row.name == "condition" for row in report.rows)


# -- the other verbs on conditional models: resume, EMA, invertible backprop, check, export, DDP --------

TINY_COND_GLOW = """
name: tiny-cond
input: {shape: [1, 8, 8], levels: 17}
condition: {kind: class, classes: 10, embed: 4}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
memory: {invertible_backprop: INVERTIBLE}
"""


@pytest.fixture(scope="module")
def labelled_digits():
    from flowspec.data import load_data

    return load_data("digits", None, (1, 8, 8), 17, classes=10).take(256, 64)


def _config(**values):
    from flowspec.train.config import TrainingConfig

    base = dict(steps=8, batch_size=16, lr=3e-3, warmup=2, eval_every=1000, checkpoint_every=1000,
                sample_every=1000, samples=4, ema=0.9, device="cpu")
    return TrainingConfig(**{**base, **values})


@pytest.mark.parametrize("invertible", ["false", "true"])
def test_resume_with_ema_is_exact_on_a_conditional_model(invertible, labelled_digits, tmp_path):
    from flowspec.train.checkpoints import load_checkpoint
    from flowspec.train.runner import train

    spec = loads_spec(TINY_COND_GLOW.replace("INVERTIBLE", invertible))
    whole = train(spec, labelled_digits, _config(steps=8), tmp_path / "whole", progress=False)
    part = train(spec, labelled_digits, _config(steps=4), tmp_path / "split", progress=False)
    rest = train(spec, labelled_digits, _config(steps=8), tmp_path / "split", resume=True, progress=False)
    assert part.losses + rest.losses == whole.losses
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
        assert torch.equal(a["ema_state_dict"][key], b["ema_state_dict"][key]), key
    # the embedding was trained (it started at N(0, 1) and moved)
    fresh = compile(spec).state_dict()["condition.net.weight"]
    assert not torch.equal(a["state_dict"]["condition.net.weight"], fresh)


def test_invertible_backprop_gradients_equal_standard_on_a_conditional_model():
    torch.manual_seed(0)
    spec = loads_spec(TINY_COND_GLOW.replace("INVERTIBLE", "true"))
    model = compile(spec).double()
    x = torch.randint(0, 17, (6, 1, 8, 8)).double()
    c = torch.arange(6)
    model.initialize(x, condition=c)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    grads = []
    for invertible in (False, True):
        model.invertible_backprop = invertible
        model.zero_grad()
        torch.manual_seed(1)
        model.bits_per_dim(x, condition=c).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0]["condition.net.weight"].abs().sum() > 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-7, atol=1e-10, msg=name)


def test_check_feeds_a_fixed_condition():
    from flowspec.compile.check import check_spec

    for text in (VECTOR_SPEC, IMAGE_SPEC):
        result = check_spec(loads_spec(text))
        assert result.ok, result


@pytest.mark.slow
def test_exported_programs_take_the_condition(tmp_path):
    from flowspec.compile.export import export_programs

    model = compile(loads_spec(VECTOR_SPEC)).eval()
    paths = export_programs(model, tmp_path)
    density = torch.export.load(paths["density"]).module()
    sampler = torch.export.load(paths["sample"]).module()
    x, c = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(density(x, c)[-1], model.log_prob(x, condition=c), atol=1e-5, rtol=1e-5)
    eps = [torch.randn(5, *shape) for shape in model.latent_shapes]
    temperature = torch.tensor(0.5)
    torch.testing.assert_close(sampler(temperature, c, *eps), model.generate(eps, 0.5, c), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_two_process_gloo_matches_one_process_on_a_conditional_model(tmp_path):
    import os
    import subprocess
    import sys

    from flowspec.train.checkpoints import load_checkpoint

    spec = tmp_path / "cond.yaml"
    spec.write_text(TINY_COND_GLOW.replace("INVERTIBLE", "false") + "training: {batch_size: 16, lr: 0.003, warmup: 1, "
                    "ema: 0.9, eval_every: 1000, checkpoint_every: 1000, sample_every: 1000, eval_batches: 1, device: cpu}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    common = ["-m", "flowspec", "train", str(spec), "--steps", "4", "--no-progress"]
    for args in ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *common,
                  "--out", str(tmp_path / "ddp")], [sys.executable, *common, "--out", str(tmp_path / "single")]):
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
    ddp, single = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(tmp_path / "single" / "last.pt")
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_bench_refuses_conditional_specs_in_one_line():
    from typer.testing import CliRunner

    from flowspec.cli.app import app

    result = CliRunner().invoke(app, ["bench", "specs/moons-cond.yaml"])
    assert result.exit_code == 2 and "bench measures unconditional flows of discrete data" in result.output
    assert "Traceback" not in result.output
