"""Jet's pieces (Kolesnikov et al. 2024, arXiv:2412.15129): the ViT conditioner's validation, cost
rule and narrowing; the shuffled channel mask (a seeded permutation, a new one per repeated copy,
inverted exactly) and the rows / columns / checkerboard masks as Jet's spatial splits; the 2 sigmoid
scale. The coupling contract (round trip, log-det vs autograd, ...) covers them from their
registration (tests/test_layer_contract.py)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from flowspec.layers.conditioners.vit import ViTConditioner
from flowspec.layers.coupling import CouplingConfig, rows


@pytest.mark.parametrize("conditioner, context", [(ViTConditioner(width=16, depth=2, heads=4), 0),
                                                  (ViTConditioner(width=8, depth=1, heads=2, mlp=12), 5),
                                                  (ViTConditioner(width=8, heads=1, zero_init=False), 2)])
def test_vit_cost_rule_counts_params_and_flops(conditioner, context):
    spatial, cin, cout = (4, 6), 3, 10
    net = conditioner.build_at(cin, cout, spatial, context).eval()
    cost = conditioner.cost(cin, cout, spatial[0] * spatial[1], context)
    assert cost.params == sum(p.numel() for p in net.parameters())
    c = torch.randn(1, context) if context else None
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, cin, *spatial), c)
    assert counter.get_total_flops() == pytest.approx(cost.matmul_flops, rel=1e-9)
    attention = 4.0 * 24 ** 2 * conditioner.width * conditioner.depth
    assert cost.matmul_flops - sum(op.flops() for op in conditioner.matmul_ops(cin, cout, spatial, context)) \
        == pytest.approx(attention)


def test_vit_rejects_heads_that_do_not_divide_the_width():
    with pytest.raises(ValidationError, match=r"heads \(5\) must divide width \(64\)"):
        ViTConditioner(width=64, heads=5)


def test_vit_narrows_to_a_width_its_heads_divide():
    narrow = ViTConditioner(width=512, heads=8, mlp=2048).narrow(6)
    assert (narrow.width, narrow.heads, narrow.mlp) == (6, 6, 24)
    assert ViTConditioner(width=512, heads=8).narrow(12).heads == 6


def test_vit_starts_at_zero_and_attends_to_every_token():
    net = ViTConditioner(width=8, heads=2).build_at(2, 4, (3, 3))
    x = torch.randn(2, 2, 3, 3)
    assert torch.equal(net(x), torch.zeros(2, 4, 3, 3))
    torch.nn.init.normal_(net.last.weight)
    x = x.requires_grad_(True)
    net(x)[0, :, 0, 0].sum().backward()  # the first token's output depends on every token (non-causal)
    assert (x.grad[0].abs().sum(0) > 0).all()


def test_shuffled_mask_is_a_seeded_permutation_each_copy_its_own():
    row = CouplingConfig(mask="shuffled", seed=7)
    copies = [row.copy_at(k) for k in range(3)]
    assert [c.seed for c in copies] == [7, 8, 9]
    orders = [c.permutation(12) for c in copies]
    assert all(sorted(o.tolist()) == list(range(12)) for o in orders)
    assert not torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0], CouplingConfig(mask="shuffled", seed=7).permutation(12))  # reproducible
    layer = row.build((12, 2, 2))
    assert torch.equal(layer.order, orders[0])
    # the transformed entries are the permuted first half: dependent_entries marks channels pi[:6]
    marks = row.dependent_entries((12, 2, 2))
    assert set(marks[:, 0, 0].nonzero()[0].tolist()) == set(orders[0][:6].tolist())


def test_shuffled_coupling_changes_exactly_the_permuted_half():
    torch.manual_seed(0)
    layer = CouplingConfig(mask="shuffled", seed=3, conditioner=ViTConditioner(width=8, heads=2)).build((6, 2, 2))
    torch.nn.init.normal_(layer.net.last.weight)
    x = torch.randn(4, 6, 2, 2)
    y, _ = layer(x)
    changed = (y - x).abs().flatten(2).sum((0, 2)) > 0
    assert set(changed.nonzero().flatten().tolist()) == set(layer.order[:3].tolist())
    torch.testing.assert_close(layer.inverse(y)[0], x)


def test_seed_only_with_the_shuffled_mask():
    with pytest.raises(ValidationError, match="seed draws the channel permutation of mask: shuffled"):
        CouplingConfig(mask="channel", seed=3)


def test_rows_mask_alternates_rows():
    mask = rows(4, 3, 0)[0, 0]
    assert mask[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0] and (mask == mask[:, :1]).all()
    assert torch.equal(rows(4, 3, 1), 1 - rows(4, 3, 0))


def test_sigmoid2_scale_is_the_identity_at_zero():
    layer = CouplingConfig(scale="sigmoid2", order="shift_scale", conditioner=ViTConditioner(width=8, heads=2)).build(
        (4, 2, 2))
    x = torch.randn(3, 4, 2, 2)
    y, logdet = layer(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(3))


def test_heads_not_dividing_the_width_is_one_located_line():
    from flowspec import SpecError, loads_spec

    text = """
input: {shape: [1, 8, 8], levels: 17}
layers:
  - squeeze
  - kind: coupling
    mask: shuffled
    conditioner: {kind: vit, width: 64, heads: 5}
"""
    with pytest.raises(SpecError) as error:
        loads_spec(text)
    assert len(error.value.problems) == 1
    assert str(error.value).startswith("<spec>:7:5: layers[1].conditioner: ")
    assert "heads (5) must divide width (64)" in str(error.value)


def test_jet_digits_copies_draw_their_own_permutations():
    from flowspec import build_graph, load_spec

    graph = build_graph(load_spec("specs/jet-digits.yaml"))
    seeds = [node.config.seed for node in graph.layers if getattr(node.config, "mask", None) == "shuffled"]
    assert seeds == [0, 1, 2, 10, 11, 12, 20, 21, 22]


def test_a_class_conditional_jet_goes_through_every_verb(tmp_path):
    """The ViT reads the condition's features with every token (``W_in [x_i, c]``, the causal
    transformer's ``E x_i + W h``): validate, report, check, train, eval and sample with a class and
    guidance work on a conditional Jet, and the class changes the density."""
    from typer.testing import CliRunner

    import flowspec
    from flowspec.cli import app
    from flowspec.data import load_data
    from flowspec.train.config import TrainingConfig
    from flowspec.train.runner import train

    spec_path = tmp_path / "jet-cond.yaml"
    spec_path.write_text("""\
name: tiny-jet-cond
input: {shape: [1, 8, 8], levels: 17}
prior: standard
condition: {kind: class, classes: 10, embed: 4, drop: 0.1, prior: plain}
layers:
  - {kind: squeeze}
  - kind: coupling
    mask: shuffled
    parity: 1
    transform: {kind: affine, scale: sigmoid2, order: shift_scale}
    conditioner: {kind: vit, width: 8, depth: 1, heads: 2, mlp: 16}
  - {kind: coupling, mask: shuffled, parity: 0, conditioner: {kind: vit, width: 8, heads: 2}}
""")
    runner = CliRunner()
    for verb in (["validate"], ["report"], ["check"]):
        result = runner.invoke(app, [*verb, str(spec_path)])
        assert result.exit_code == 0, result.output
    data = load_data("digits", None, (1, 8, 8), 17, classes=10).take(64, 16)
    config = TrainingConfig(steps=2, batch_size=16, warmup=1, eval_every=1000, checkpoint_every=1000,
                            sample_every=1000, samples=4, device="cpu")
    out = tmp_path / "run"
    train(flowspec.load_spec(spec_path), data, config, out, progress=False)
    model = flowspec.load_model(out / "last.pt").eval()
    with torch.no_grad():
        for parameter in model.parameters():  # off the zero-initialised outputs, so the class matters
            parameter.add_(0.1 * torch.randn_like(parameter))
        x = torch.rand(4, 1, 8, 8) - 0.5  # model space
        zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
        assert not torch.allclose(model.log_prob(x, condition=zeros), model.log_prob(x, condition=ones))
        guided, plain = (model.sample(4, condition=ones, guidance=w, generator=torch.Generator().manual_seed(0))
                         for w in (2.0, 0.0))
        assert not torch.allclose(guided, plain)  # the couplings mix conditional and null parameters
    for verb in (["eval", str(out / "last.pt")],
                 ["sample", str(out / "last.pt"), "-n", "4", "--class", "3", "-o", str(tmp_path / "three.npy")],
                 ["sample", str(out / "last.pt"), "--per-class", "1", "--guidance", "1",
                  "-o", str(tmp_path / "guided.npy")]):
        result = runner.invoke(app, verb)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "three.npy").exists() and (tmp_path / "guided.npy").exists()


def test_guidance_in_a_coupling_mixes_conditional_and_null_parameters():
    """``x_a = tau^{-1}(y_a; theta_c + w (theta_c - theta_0))`` with ``theta = NN(x_b, h)``; weight 0
    is the plain conditional inverse."""
    torch.manual_seed(0)
    layer = CouplingConfig(mask="shuffled", seed=1, conditioner=ViTConditioner(width=8, heads=2)).build(
        (4, 2, 2), (3,)).double().eval()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
        y, h, h0 = torch.randn(5, 4, 2, 2).double(), torch.randn(5, 3).double(), torch.randn(5, 3).double()
        torch.testing.assert_close(layer.generate_guided(y, None, 1.0, h, h0, 0.0), layer.inverse(y, h)[0])
        guided = layer.generate_guided(y, None, 1.0, h, h0, 1.5)
        y_a, y_b = layer.split(y)
        theta = 2.5 * layer.params(y_b, h) - 1.5 * layer.params(y_b, h0)
        x_a, _ = layer.transform.inverse(y_a, theta)
        torch.testing.assert_close(guided, layer.join(x_a, y_b))
        assert not torch.allclose(guided, layer.inverse(y, h)[0])
