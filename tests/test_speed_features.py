"""Issue 7: inference folding, invertible backprop and the invconv weight cache."""

from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys

import pytest
import torch

from flowspec.compile import compile as compile_spec
from flowspec.compile.fold import FoldedConv, fold_for_inference, folding_error
from flowspec.compile.invertible_backprop import invertible_run
from flowspec.errors import SpecError
from flowspec.layers.actnorm import ActNormConfig
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.conditioners import ConvConditioner, MLPConditioner
from flowspec.layers.invconv import InvConvConfig
from flowspec.layers.permute import PermuteConfig  # noqa: F401  (kind registered)
from flowspec.layers.squeeze import SqueezeConfig
from flowspec.spec.loader import loads_spec

MULTISCALE = """\
input: {shape: [2, 8, 8], levels: 17}
levels: 2
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: LU}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""


def multiscale(lu: bool = True, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    model = compile_spec(loads_spec(MULTISCALE.replace("LU", str(lu).lower()))).to(dtype)
    x = torch.rand(6, 2, 8, 8, dtype=dtype) - 0.5
    model.train()
    with torch.no_grad():
        model.log_prob(x)  # actnorm's data-dependent init
        for p in model.parameters():  # move off the identity-at-init point
            p.add_(0.05 * torch.randn_like(p))
    return model, x


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


# -- folding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lu", [True, False])
def test_folded_model_equals_unfolded(lu):
    model, x = multiscale(lu)
    model.eval()
    folded = fold_for_inference(model)
    assert sum(isinstance(layer, FoldedConv) for layer in folded.layers) == 4  # 2 levels x 2 steps
    assert len(folded.layers) == len(model.layers) - 4
    with torch.no_grad():
        assert relative(model.log_prob(x), folded.log_prob(x)) < 1e-5
        zs, logdet = model(x)
        zs_f, logdet_f = folded(x)
        assert all(relative(a, b) < 1e-5 for a, b in zip(zs, zs_f))
        assert relative(logdet, logdet_f) < 1e-5
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert relative(model.sample(5, temperature=0.8, generator=g1), folded.sample(5, temperature=0.8, generator=g2)) < 1e-5
    errors = folding_error(model, folded)
    assert errors["samples"] < 1e-5 and errors["log_prob"] < 1e-5


def test_folded_conv_on_vectors_and_model_left_unchanged():
    actnorm, invconv = ActNormConfig().build((5,)).eval(), InvConvConfig(seed=2).build((5,)).eval()
    with torch.no_grad():
        actnorm.bias.normal_()
        actnorm.log_scale.normal_(0, 0.3)
    folded = FoldedConv(actnorm, invconv)
    x = torch.randn(7, 5)
    a, ld_a = actnorm(x)
    y, ld_b = invconv(a)
    y_f, ld_f = folded(x)
    assert relative(y, y_f) < 1e-5 and relative(ld_a + ld_b, ld_f) < 1e-5
    back, ld_inv = folded.inverse(y_f)
    assert relative(x, back) < 1e-5 and relative(-ld_f, ld_inv) < 1e-6


def test_folding_leaves_the_source_model_trainable():
    model, x = multiscale()
    before = [p.clone() for p in model.parameters()]
    fold_for_inference(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert any(isinstance(m, torch.nn.Parameter) for m in model.parameters())


# -- invertible backprop -----------------------------------------------------------------------
IMAGE, VECTOR = (4, 4, 4), (6,)
LAYERS = [
    ("actnorm", ActNormConfig(), IMAGE),
    ("invconv-lu", InvConvConfig(lu=True), IMAGE),
    ("invconv-plain", InvConvConfig(lu=False, seed=1), VECTOR),
    ("coupling-affine", CouplingConfig(conditioner=ConvConditioner(hidden=8)), IMAGE),
    ("coupling-additive-parity", CouplingConfig(transform="additive", parity=1,
                                                conditioner=MLPConditioner(hidden=[8])), VECTOR),
    ("coupling-checkerboard-exp", CouplingConfig(mask="checkerboard", scale="exp",
                                                 conditioner=ConvConditioner(hidden=8)), IMAGE),
    ("squeeze", SqueezeConfig(), IMAGE),
]


@pytest.mark.parametrize("name,config,shape", LAYERS, ids=[row[0] for row in LAYERS])
def test_invertible_backprop_gradients_equal_standard_per_layer(name, config, shape):
    torch.manual_seed(1)
    layers = torch.nn.ModuleList([config.build(shape), config.build(shape)]).double()
    with torch.no_grad():
        for p in layers.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for layer in layers:
            if hasattr(layer, "initialized"):
                layer.initialized.fill_(True)
    twin = copy.deepcopy(layers)
    x = torch.randn(5, *shape, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = {}

    def loss(y, logdet):
        weight = weights.setdefault("y", torch.randn(y.shape, dtype=torch.float64))
        return (y * weight).sum() + (logdet * torch.arange(1.0, 6.0, dtype=torch.float64)).sum()

    y, logdet = xa, torch.zeros(5, dtype=torch.float64)
    for layer in layers:
        y, step = layer(y)
        logdet = logdet + step
    loss(y, logdet).backward()
    y_i, logdet_i = invertible_run(list(twin), xb)
    assert relative(y, y_i) < 1e-12 and relative(logdet, logdet_i) < 1e-12
    loss(y_i, logdet_i).backward()
    assert relative(xa.grad, xb.grad) < 1e-5
    for p, q in zip(layers.parameters(), twin.parameters()):
        assert q.grad is not None
        assert relative(p.grad, q.grad) < 1e-5


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_invertible_backprop_gradients_equal_standard_on_a_multiscale_model(dtype, tolerance):
    model, x = multiscale(dtype=dtype)
    twin = copy.deepcopy(model)
    twin.invertible_backprop = True
    model.log_prob(x).mean().backward()
    twin.log_prob(x).mean().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert q.grad is not None, name
        assert relative(p.grad, q.grad) < tolerance, name


def test_invertible_backprop_stores_fewer_activations():
    """Bytes saved for backward (counted with saved-tensor hooks) shrink under invertible backprop."""
    from flowspec.bench.memory import saved_activation_bytes

    model, x = multiscale()
    twin = copy.deepcopy(model)
    twin.invertible_backprop = True
    plain, invertible = saved_activation_bytes(model, x), saved_activation_bytes(twin, x)
    assert invertible < 0.5 * plain


def test_invertible_backprop_runs_actnorm_init_and_matches_it():
    """An uninitialised actnorm is initialised exactly as under standard backprop."""
    torch.manual_seed(0)
    spec = loads_spec(MULTISCALE.replace("LU", "true"))
    a = compile_spec(spec).train()
    b = copy.deepcopy(a)
    b.invertible_backprop = True
    x = torch.rand(6, 2, 8, 8) * 3
    a.log_prob(x).mean().backward()
    b.log_prob(x).mean().backward()
    assert b.initialized
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q) and torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_memory_field_in_spec():
    spec = loads_spec(MULTISCALE.replace("LU", "true") + "memory: {invertible_backprop: true}\n")
    assert compile_spec(spec).invertible_backprop
    assert not compile_spec(loads_spec(MULTISCALE.replace("LU", "true"))).invertible_backprop
    with pytest.raises(SpecError) as error:
        loads_spec(MULTISCALE.replace("LU", "true") + "memory: {invertible_backprop: maybe}\n")
    assert "memory.invertible_backprop" in str(error.value.problems[0])


# -- invconv cache -----------------------------------------------------------------------------
@pytest.mark.parametrize("lu", [True, False])
def test_invconv_cache_follows_parameter_updates(lu):
    layer = InvConvConfig(lu=lu).build((4, 3, 3))
    x = torch.randn(2, 4, 3, 3)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01, foreach=True)
    layer.eval()
    with torch.no_grad():
        first, _ = layer(x)
        assert layer._cache is not None
        cached, _ = layer(x)
        assert torch.equal(first, cached)
    layer.train()
    assert layer._cache is None
    y, logdet = layer(x)
    (y * torch.randn_like(y)).sum().backward()
    optimizer.step()
    layer.eval()
    with torch.no_grad():
        after, logdet_after = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.matrix().view(4, 4, 1, 1))
        assert torch.allclose(after, expected, atol=1e-6)
        assert not torch.allclose(after, first, atol=1e-5)
        assert torch.allclose(logdet_after, 9 * layer.log_abs_det().expand(2))
        back, _ = layer.inverse(after)
        assert torch.allclose(back, x, atol=1e-5)
        # an in-place update while in eval mode (e.g. load_state_dict) also invalidates the cache
        state = {k: v + 0.01 for k, v in layer.state_dict().items() if v.is_floating_point()}
        layer.load_state_dict(state, strict=False)
        reloaded, _ = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.matrix().view(4, 4, 1, 1))
        assert torch.allclose(reloaded, expected, atol=1e-6)
        # even a mutation through .data, which autograd's version counter does not see
        for p in layer.parameters():
            p.data.mul_(0.9)
        mutated, _ = layer(x)
        expected = torch.nn.functional.conv2d(x, layer.matrix().view(4, 4, 1, 1))
        assert torch.allclose(mutated, expected, atol=1e-6)
        assert not torch.allclose(mutated, reloaded, atol=1e-4)


def test_invconv_not_cached_when_gradients_are_recorded():
    layer = InvConvConfig().build((4, 3, 3)).eval()
    y, _ = layer(torch.randn(2, 4, 3, 3))
    y.sum().backward()
    assert layer._cache is None
    assert all(p.grad is not None for p in layer.parameters())


def test_invertible_backprop_activation_memory_stays_flat_in_k():
    from flowspec.bench.memory import saved_activation_bytes
    from flowspec.bench.measure import with_steps

    spec = loads_spec(MULTISCALE.replace("LU", "true"))
    x = torch.rand(4, 2, 8, 8) - 0.5
    saved = {}
    for steps in (1, 4):
        for invertible in (False, True):
            torch.manual_seed(0)
            model = with_steps(spec, steps, invertible).train()
            with torch.no_grad():
                model.log_prob(x)  # actnorm init
            saved[steps, invertible] = saved_activation_bytes(model, x)
    assert saved[4, False] > 2.5 * saved[1, False]
    assert saved[4, True] < 1.3 * saved[1, True]


def test_bench_cli_prints_measured_figures_and_rejects_bad_specs(tmp_path):
    from typer.testing import CliRunner

    from flowspec.cli import app

    good = tmp_path / "tiny.yaml"
    good.write_text(MULTISCALE.replace("LU", "true"))
    result = CliRunner().invoke(app, ["bench", str(good), "--batch", "2", "--repeats", "1",
                                      "--no-baselines", "--no-memory"])
    assert result.exit_code == 0, result.output
    assert "train step  flowspec " in result.output and "images/s" in result.output
    assert "folded" in result.output and "of the measured conv peak" in result.output
    assert "ceiling     flowspec" in result.output
    assert "target      training: flowspec" in result.output and "of flowspec's conv ceiling (target 85%" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(MULTISCALE.replace("LU", "true") + "memory: {invertible_backprop: 3}\n")
    result = CliRunner().invoke(app, ["bench", str(bad)])
    assert result.exit_code == 2
    assert "memory.invertible_backprop" in result.output


def test_conv_conditioner_computes_in_channels_last_and_returns_nchw():
    torch.manual_seed(0)
    net = ConvConditioner(hidden=16, zero_init=False).build(3, 6).double()
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.dim() == 4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)[:, :3]
    y = net(x)
    assert y.is_contiguous() and y.shape == (2, 6, 8, 8)
    plain = torch.nn.Sequential(*(copy.deepcopy(layer) for layer in net))  # same weights, NCHW run
    for layer in plain:
        if isinstance(layer, torch.nn.Conv2d):
            layer.weight.data = layer.weight.data.contiguous()
    assert relative(y, plain(x.contiguous())) < 1e-12
    y.square().sum().backward()  # in-place ReLUs leave the graph differentiable
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_ceiling_records_every_conv_the_step_runs():
    from flowspec.bench.ceiling import conv_floor, record_convs

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(3, 2, 5, 5)
    calls = record_convs(lambda: net(x).sum().backward())
    forward = {call: n for call, n in calls.items() if "backward" not in str(call[0])}
    backward = {call: n for call, n in calls.items() if "backward" in str(call[0])}
    assert sum(forward.values()) == 2 and sum(backward.values()) == 2
    masks = sorted(tuple(call[1][-1]) for call in backward)
    assert masks == [(False, True, True), (True, True, True)]  # no input gradient for the data
    twice = record_convs(lambda: (net(x).sum() + net(x).sum()).backward())
    assert all(twice[call] == 2 * n for call, n in calls.items())
    assert 0 < conv_floor(calls, repeats=1) < float("inf")


def test_conv_replay_runs_exactly_the_recorded_convolutions():
    """The ceiling's replay (timed beside the workload) makes the same convolution calls, as often."""
    from flowspec.bench.ceiling import conv_replay, record_convs

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(3, 2, 5, 5)
    step = lambda: (net(x).sum() + net(x).sum()).backward()  # noqa: E731
    calls = record_convs(step)
    replay = conv_replay(calls, repeats=1)
    assert record_convs(replay) == calls
    assert conv_replay(record_convs(lambda: net[1](x))) is None  # no convolutions: no ceiling


def test_bench_on_a_vector_spec_skips_the_conv_ceiling(tmp_path):
    from typer.testing import CliRunner

    from flowspec.cli import app

    spec = tmp_path / "vector.yaml"
    spec.write_text("input: {shape: [6], levels: 4}\nprior: logistic\nlayers:\n"
                    "  - {kind: coupling, transform: additive, conditioner: {kind: mlp, hidden: [8]}}\n"
                    "  - {kind: coupling, transform: additive, parity: 1, conditioner: {kind: mlp, hidden: [8]}}\n"
                    "  - {kind: scaling}\n")
    result = CliRunner().invoke(app, ["bench", str(spec), "--batch", "2", "--repeats", "1",
                                      "--no-baselines", "--no-memory"])
    assert result.exit_code == 0, result.output
    assert "train step  flowspec bf16-autocast" in result.output
    assert "skipped     ceiling flowspec: no convolutions" in result.output


def test_conv_breakdown_lists_each_recorded_call_with_its_layouts():
    """The per-call breakdown has one row per distinct convolution the step runs, with its count
    per step, the layouts its tensors had in place and positive times."""
    from flowspec.bench.ceiling import conv_breakdown, record_convs

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(3, 2, 5, 5).contiguous(memory_format=torch.channels_last)
    step = lambda: (net(x).sum() + net(x[:, :, :, 1:]).sum()).backward()  # noqa: E731
    calls = record_convs(step)
    rows = conv_breakdown(step, calls=2, repeats=1, operands=2, flush_bytes=1 << 20)
    assert len(rows) == len(calls) and sum(row.count for row in rows) == sum(calls.values())
    first = [row for row in rows if row.op == "convolution" and row.shapes[1] == (4, 2, 3, 3)]
    assert sorted(row.layouts for row in first) == ["LL-", "SL-"]  # the cropped input is a strided view
    assert all(row.in_place > 0 and row.replay > 0 and row.replay_fresh > 0 and row.replay_cold > 0 for row in rows)


def test_convs_in_place_times_only_the_convolutions():
    """The in-place conv time counts convolution calls only: none, zero; with a slow non-conv op
    beside them, far less than the whole call."""
    import time

    from flowspec.bench.ceiling import ConvsInPlace

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.randn(3, 2, 5, 5)
    no_convs = ConvsInPlace(lambda: net[1](x))
    no_convs()
    assert no_convs.seconds == [0.0]

    def step():
        net(x).sum().backward()
        time.sleep(0.05)  # not a convolution

    timed = ConvsInPlace(step)  # wall clock: the sleep would count if it were timed
    for _ in range(3):
        timed()
    assert len(timed.seconds) == 3 and 0.0 < timed.median(skip=1) < 0.05


FAULTS_PER_STEP = r"""
import resource, sys, torch
if sys.argv[1] == "keep":
    from flowspec.core.speed import keep_freed_memory
    assert keep_freed_memory()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(6, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(128, 128, 1),
                          torch.nn.ReLU(), torch.nn.Conv2d(128, 12, 3, padding=1))
x = torch.randn(16, 6, 16, 16, requires_grad=True)  # glow-bench's conditioner at 16x16: 2 MiB activations
for _ in range(3):
    net(x).square().sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    net(x).square().sum().backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_keep_freed_memory_stops_activations_page_faulting():
    """After keep_freed_memory, freed activations are reused: a forward and backward pass of a
    glow-bench-sized conditioner costs almost no minor page faults (by default some 4,000: each
    fresh 2 MiB tensor faults on its pages). Each case runs in its own process: the setting is
    process-wide."""
    def faults(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return float(out.stdout.strip().splitlines()[-1])

    default, kept = faults("default"), faults("keep")
    assert default > 1000 and kept < default / 20, (default, kept)
