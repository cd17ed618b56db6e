"""The conditioners of RealNVP (resnet), Flow++ (gated attention) and Glow's conv options:
validation names the field, the cost rules count what the modules hold and compute, Glow's
actnorm initialises from data, the learned output scale is exp(3 logs)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from flowspec.layers.conditioners.conv import ConvConditioner, HiddenActNorm
from flowspec.layers.conditioners.gated import GatedConditioner
from flowspec.layers.conditioners.realnvp import RealNVPConditioner
from flowspec.layers.conditioners.resmlp import ResMLPConditioner
from flowspec.layers.conditioners.resnet import ResNetConditioner
from flowspec.layers.coupling import CouplingConfig


@pytest.mark.parametrize("options, message", [({"hidden": 96, "heads": 5}, "heads .5. must divide hidden .96."),
                                              ({"dropout": 1.0}, "dropout must be in"),
                                              ({"dropout": -0.1}, "dropout must be in")])
def test_gated_rejects_bad_options(options, message):
    with pytest.raises(ValidationError, match=message):
        GatedConditioner(**options)


def test_narrow_keeps_heads_dividing_the_width():
    narrow = GatedConditioner(hidden=96, heads=4).narrow(6)
    assert (narrow.hidden, narrow.heads) == (6, 3)


@pytest.mark.parametrize("conditioner", [GatedConditioner(hidden=16, blocks=2, heads=4),
                                         GatedConditioner(hidden=8, blocks=2, heads=2, data_init=True,
                                                          zero_init=False, init_scale=0.1),
                                         ResNetConditioner(hidden=8, blocks=2, norm="batch"),
                                         ResNetConditioner(hidden=8, blocks=2, norm="weight"),
                                         RealNVPConditioner(hidden=8, blocks=2),
                                         RealNVPConditioner(hidden=8, blocks=1, double=False, zero_init=False),
                                         ConvConditioner(hidden=8, actnorm=True, learned_scale=True)])
def test_cost_rule_counts_params_and_matmul_flops(conditioner):
    spatial, cin, cout = (4, 6), 3, 10
    net = conditioner.build_at(cin, cout, spatial).eval()
    cost = conditioner.cost(cin, cout, spatial[0] * spatial[1])
    assert cost.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, cin, *spatial))
    assert counter.get_total_flops() == pytest.approx(cost.matmul_flops, rel=1e-9)


@pytest.mark.parametrize("norm", ["batch", "weight"])
def test_resmlp_cost_rule_counts_params_and_matmul_flops(norm):
    conditioner = ResMLPConditioner(hidden=8, blocks=2, norm=norm)
    net = conditioner.build(3, 10, context=2).eval()
    cost = conditioner.cost(3, 10, 1, context=2)
    assert cost.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 3), torch.randn(1, 2))
    assert counter.get_total_flops() == pytest.approx(cost.matmul_flops, rel=1e-9)


def test_gated_attention_memory_grows_with_the_square_of_the_pixels():
    gated = GatedConditioner(hidden=16, blocks=1, heads=4)
    small, large = gated.cost(3, 6, 16).outputs, gated.cost(3, 6, 64).outputs
    assert large - 4 * small >= 4 * (64 ** 2 - 4 * 16 ** 2)  # the heads x T^2 attention weights


def test_gated_dropout_acts_in_training_only():
    gated = GatedConditioner(hidden=8, blocks=1, heads=2, dropout=0.5, zero_init=False)
    net = gated.build_at(2, 4, (4, 4))
    x = torch.randn(2, 2, 4, 4)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_glow_actnorm_initialises_from_the_first_training_batch():
    conditioner = ConvConditioner(hidden=8, depth=2, actnorm=True)
    net = conditioner.build(2, 4).train()
    norms = [m for m in net.modules() if isinstance(m, HiddenActNorm)]
    assert len(norms) == 2 and all(m.bias.numel() == 8 for m in norms)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.clone())) for m in norms]
    net(3.0 * torch.randn(32, 2, 6, 6) + 1.0)
    for h in hooks:
        h.remove()
    for out in outputs:
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    assert all(bool(m.initialized) for m in norms)
    hidden_convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][:-1]
    assert all(c.bias is None for c in hidden_convs)  # Glow's hidden convs trade their bias for actnorm


def test_learned_scale_multiplies_the_output_by_exp_3_logs():
    plain = ConvConditioner(hidden=8, zero_init=False)
    scaled = ConvConditioner(hidden=8, zero_init=False, learned_scale=True)
    torch.manual_seed(0)
    a = plain.build(2, 4)
    torch.manual_seed(0)
    b = scaled.build(2, 4)
    with torch.no_grad():
        b[-1].logs.fill_(0.1)
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(b(x), a(x) * torch.exp(torch.tensor(0.3)), rtol=1e-5, atol=1e-6)


def test_resnet_batch_norm_coupling_round_trips_in_training_mode():
    """In training, batch norm's statistics come from the conditioning half, which the inverse
    sees unchanged: the same batch gives the same parameters both ways."""
    config = CouplingConfig(transform="affine", conditioner=ResNetConditioner(hidden=8, blocks=1, zero_init=False))
    layer = config.build((4, 4, 4)).double().train()
    x = torch.randn(5, 4, 4, 4, dtype=torch.float64)
    y, logdet = layer(x)
    x_back, inverse_logdet = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("entry", ["input", "blocks"])
def test_gated_context_cost_rule(entry):
    """The context as input channels, or through a 1x1 shortcut into every gated conv (Flow++)."""
    conditioner = GatedConditioner(hidden=8, blocks=2, heads=2, context_entry=entry)
    spatial, cin, cout, context = (4, 6), 3, 10, 5
    net = conditioner.build_at(cin, cout, spatial, context).eval()
    cost = conditioner.cost(cin, cout, spatial[0] * spatial[1], context)
    assert cost.params == sum(p.numel() for p in net.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, cin, *spatial), torch.randn(1, context, *spatial))
    assert counter.get_total_flops() == pytest.approx(cost.matmul_flops, rel=1e-9)
    shortcuts = [m for name, m in net.named_modules() if name.endswith("context_shortcut")]
    assert len(shortcuts) == (2 if entry == "blocks" else 0)


def test_gated_data_init_sets_the_output_scale():
    """Flow++'s data-dependent init: after the first training call every conv's outputs have zero
    mean and unit std per channel, the output conv's std is init_scale."""
    conditioner = GatedConditioner(hidden=8, blocks=1, heads=2, data_init=True, zero_init=False, init_scale=0.1)
    net = conditioner.build_at(3, 6, (4, 4))
    x = torch.randn(64, 3, 4, 4)
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    with torch.no_grad():
        out = net(x)
        first = net.first(x)
    assert torch.allclose(first.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-4)
    assert torch.allclose(first.std(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    assert torch.allclose(out.std(dim=(0, 2, 3), unbiased=False), torch.full((6,), 0.1), atol=1e-4)
    assert all(bool(m.initialized) for m in net.modules() if hasattr(m, "initialized"))


def test_gated_data_init_compiles_as_one_graph_and_its_flag_follows_the_weights():
    """The data-init check reads a Python mirror of the ``initialized`` buffer: a trained-mode call
    traces as one graph (no data-dependent guard on the buffer), and loading weights sets the
    mirror from the buffer (pending before init, done after, both ways)."""
    from torch._dynamo.utils import counters

    conditioner = GatedConditioner(hidden=8, blocks=1, heads=2, data_init=True, zero_init=False, init_scale=0.1)
    net = conditioner.build_at(3, 6, (4, 4))
    fresh = conditioner.build_at(3, 6, (4, 4))
    x = torch.randn(16, 3, 4, 4)
    net.train()
    with torch.no_grad():
        net(x)  # the data-dependent init, eagerly
    convs = [m for m in fresh.modules() if type(m).__name__ == "DataInitConv2d"]
    assert all(m.pending for m in convs)
    fresh.load_state_dict(net.state_dict())
    assert not any(m.pending for m in convs)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), net(x))
    assert int(counters["stats"]["unique_graphs"]) == 1 and not counters["graph_break"]
    torch._dynamo.reset()
    fresh.load_state_dict(conditioner.build_at(3, 6, (4, 4)).state_dict())
    assert all(m.pending for m in convs)


@pytest.mark.parametrize("options, message", [
    ({"init_scale": 0.1}, "add data_init: true"),
    ({"init_scale": 0.1, "data_init": True}, "set zero_init: false"),
    ({"init_scale": 0.0, "data_init": True, "zero_init": False}, "init_scale must be > 0")])
def test_gated_init_scale_needs_data_init_and_no_zero_init(options, message):
    with pytest.raises(ValidationError, match=message):
        GatedConditioner(**options)


def test_flowpp_options_train_end_to_end(tmp_path):
    """A variational dequantizer whose gated conditioners take its context through the block
    shortcuts, data-initialised convs at init_scale 0.1: two steps on digits; every conv was
    initialised from the first batch."""
    import flowspec
    from flowspec.data import load_digits
    from flowspec.train.config import TrainingConfig
    from flowspec.train.runner import train

    spec = flowspec.loads_spec("""
input: {shape: [1, 8, 8], levels: 17}
dequantization:
  kind: variational
  steps: 2
  context: {kind: conv, hidden: 4, depth: 2}
  coupling:
    conditioner: {kind: gated, hidden: 8, blocks: 1, heads: 2, context_entry: blocks, data_init: true,
                  zero_init: false, init_scale: 0.1}
preprocess: {kind: logit, alpha: 0.05}
prior: standard
layers:
  - {kind: coupling, mask: checkerboard, transform: {kind: mixlogistic, components: 2},
     conditioner: {kind: gated, hidden: 8, blocks: 1, heads: 2, data_init: true, zero_init: false, init_scale: 0.1}}
""")
    model = flowspec.compile(spec)
    data = load_digits().take(64, 32)
    config = TrainingConfig(steps=2, batch_size=16, eval_every=2, checkpoint_every=2, sample_every=100, ema=None)
    result = train(spec, data, config, tmp_path / "run", model=model, progress=False, log=lambda line: None)
    assert result.steps == 2 and math.isfinite(result.test_bpd)
    flags = [bool(m.initialized) for m in model.modules() if type(m).__name__ == "DataInitConv2d"]
    assert len(flags) == 2 * (1 + 5 + 1) + (1 + 4 + 1) and all(flags)
