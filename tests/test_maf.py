"""The ``maf`` layer: autoregressive in its order (strictly triangular conditioner Jacobian, triangular
layer Jacobian), exact sequential inverse, log-det equal to slogdet, and its place in specs."""

from __future__ import annotations

import pytest
import torch

from flowspec import SpecError, build_graph, compile, loads_spec
from flowspec.layers.maf import MAFConfig


def perturbed(config: MAFConfig, features: int, context=None, seed: int = 0):
    torch.manual_seed(seed)
    layer = config.build((features,), context).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return layer.eval()


ORDERS = [MAFConfig(hidden=16, order="natural"), MAFConfig(hidden=16, order="reversed", depth=1),
          MAFConfig(hidden=16, order="random", seed=5), MAFConfig(hidden=16, order="random", seed=6, depth=3),
          MAFConfig(hidden=16, order="reversed", activation="relu"), MAFConfig(hidden=16, activation="gelu"),
          MAFConfig(hidden=16, order="random", seed=2, activation="tanh")]


@pytest.mark.parametrize("config", ORDERS, ids=lambda c: f"{c.order}-{c.seed}-depth{c.depth}-{c.activation}")
@pytest.mark.parametrize("context", [None, (3,)])
def test_jacobian_is_triangular_in_the_layers_order(config, context):
    features = 6
    layer = perturbed(config, features, context)
    rank = config.degrees(features)  # rank[i] = position of variable i in the order (1-based)
    x = torch.randn(features, dtype=torch.float64)
    c = None if context is None else torch.randn(1, 3, dtype=torch.float64)
    made = torch.autograd.functional.jacobian(lambda v: layer.made(v.view(1, -1), c)[0], x)  # (P, D, D)
    later_or_same = rank[None, :] >= rank[:, None]  # [i, j]: j is not before i in the order
    assert made[:, later_or_same].abs().max() == 0  # the conditioner is strictly triangular
    assert made[:, ~later_or_same].abs().max() > 0
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v.view(1, -1), c)[0][0], x)
    assert jacobian[rank[None, :] > rank[:, None]].abs().max() == 0  # the layer: triangular, diagonal free
    assert torch.all(jacobian.diagonal() != 0)
    _, logdet = layer(x.view(1, -1), c)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jacobian)[1], atol=1e-10, rtol=0)


@pytest.mark.parametrize("config", ORDERS, ids=lambda c: f"{c.order}-{c.seed}-depth{c.depth}-{c.activation}")
def test_inverse_round_trips_and_negates_the_logdet(config):
    layer = perturbed(config, 7, (2,))
    x = torch.randn(5, 7, dtype=torch.float64)
    c = torch.randn(5, 2, dtype=torch.float64)
    y, logdet = layer(x, c)
    back, inverse_logdet = layer.inverse(y, c)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(inverse_logdet, -logdet, atol=1e-10, rtol=0)


def test_inverse_takes_one_made_pass_per_variable():
    layer = perturbed(MAFConfig(hidden=8), 5)
    calls = []
    layer.made.register_forward_hook(lambda *args: calls.append(1))
    y, _ = layer(torch.randn(2, 5, dtype=torch.float64))
    assert len(calls) == 1
    layer.inverse(y)
    assert len(calls) == 1 + 5


def test_a_fresh_layer_is_the_identity():
    layer = MAFConfig(hidden=8).build((4,), (2,))
    x = torch.randn(3, 4)
    y, logdet = layer(x, torch.randn(3, 2))
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(logdet, torch.zeros(3))


def test_masked_units_start_at_the_default_init_over_the_inputs_their_mask_keeps():
    """Row ``u`` of a masked weight starts ``U(-1/sqrt(n_u), 1/sqrt(n_u))``, ``n_u`` its kept inputs: the
    100 first-layer units of degree 1 (one input each) reach near 1, not ``1/sqrt(5)``. With ``init:
    masked`` every hidden layer does so; with ``input`` (maf's default) the later layers start at
    ``nn.Linear``'s default over all their inputs; with ``dense`` every layer does."""
    torch.manual_seed(0)
    layouts = {init: MAFConfig(hidden=400, depth=2, init=init).build((5,)).made
               for init in ("masked", "input", "dense")}
    assert MAFConfig().init == "input"
    for init in ("masked", "input"):
        first = layouts[init].hidden_layers[0]
        bound = 1 / first.mask.sum(1).clamp_min(1).sqrt()
        assert torch.all((first.weight * first.mask).abs().amax(1) <= bound)
        single = first.mask.sum(1) == 1
        assert single.sum() == 100
        assert (first.weight * first.mask)[single].abs().amax() > 0.9
    second = {init: made.hidden_layers[1] for init, made in layouts.items()}
    low = second["masked"].mask.sum(1) == 100  # degree-1 units of the second layer: 100 kept inputs of 400
    assert (second["masked"].weight * second["masked"].mask)[low].abs().amax() > 0.09  # ~ 1 / sqrt(100)
    for init in ("input", "dense"):
        assert second[init].weight.abs().amax() <= 1 / 400 ** 0.5  # over all 400 inputs
    assert layouts["dense"].hidden_layers[0].weight.abs().amax() <= 1 / 5 ** 0.5  # over all 5 inputs


def test_the_shift_gain_scales_the_shift_and_nothing_else():
    """``y = s x + k h_t``: maf's default ``k = 3``; the log-det is ``log s`` whatever ``k``, the inverse
    undoes it, and the cost counts the one multiply per entry."""
    from flowspec.layers.transforms import AffineTransform

    assert MAFConfig().transform.shift_gain == 3.0 and AffineTransform().shift_gain == 1.0
    params = torch.randn(4, 2, 6, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    for order in ("scale_shift", "shift_scale"):
        plain, gained = (AffineTransform(scale="exp", order=order, shift_gain=k).build() for k in (1.0, 3.0))
        tripled = torch.stack([3 * params[:, 0], params[:, 1]], 1)
        y, logdet = gained(x, params)
        y_plain, logdet_plain = plain(x, tripled)
        torch.testing.assert_close(y, y_plain)
        torch.testing.assert_close(logdet, logdet_plain)
        back, inverse_logdet = gained.inverse(y, params)
        torch.testing.assert_close(back, x)
        torch.testing.assert_close(inverse_logdet, -logdet)
    costs = [AffineTransform(shift_gain=k).cost() for k in (1.0, 3.0)]
    assert costs[1].flops_forward - costs[0].flops_forward == 1.0
    assert costs[1].flops_inverse - costs[0].flops_inverse == 1.0


def test_the_activation_enters_the_cost_report():
    elu, relu = (MAFConfig(hidden=16, activation=a).cost((6,)).flops_forward for a in ("elu", "relu"))
    assert elu - relu == 3.0 * 16 * 2  # 4 vs 1 FLOP per hidden unit, 2 hidden layers


def test_cost_rule_says_the_inverse_is_sequential():
    config = MAFConfig(hidden=16, depth=2)
    cost = config.cost((10,), (4,))
    assert cost.matmul_flops_inverse == 10 * cost.matmul_flops_forward
    assert cost.params == sum(p.numel() for p in config.build((10,), (4,)).parameters())
    assert "sequential" in (MAFConfig.cost.__doc__ or "")


SPEC = """
input: {shape: [3], data: continuous}
prior: standard
layers:
  - {kind: maf, hidden: 8, order: natural}
  - {kind: maf, hidden: 8, order: reversed}
"""


def test_maf_in_a_spec_is_exact_end_to_end():
    model = compile(loads_spec(SPEC)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    x = torch.randn(4, 3, dtype=torch.float64)
    zs, logdet = model(x)
    back, _ = model.inverse(zs)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("row, message", [
    ("{kind: maf, order: sideways}", "layers[0].order: Input should be 'natural', 'reversed' or 'random'"),
    ("{kind: maf, hidden: 0}", "layers[0].hidden: Input should be greater than 0"),
    ("{kind: maf, depth: 9}", "layers[0].depth: Input should be less than or equal to 8"),
    ("{kind: maf, seed: -1}", "layers[0].seed: Input should be greater than or equal to 0"),
    ("{kind: maf, transform: wavy}", "layers[0].transform: unknown kind 'wavy'"),
    ("{kind: maf, activation: swish}", "layers[0].activation: Input should be 'elu', 'relu', 'gelu' or 'tanh'"),
    ("{kind: maf, init: zeros}", "layers[0].init: Input should be 'masked', 'input' or 'dense'"),
    ("{kind: maf, transform: {kind: affine, shift_gain: 0}}",
     "layers[0].transform.shift_gain: Input should be greater than 0"),
    ("{kind: maf, transform: {kind: affine, shift_gain: 500}}",
     "layers[0].transform.shift_gain: Input should be less than or equal to 100"),
])
def test_bad_maf_fields_are_refused_with_their_line(row, message):
    with pytest.raises(SpecError) as error:
        loads_spec(SPEC.replace("{kind: maf, hidden: 8, order: natural}", row))
    assert str(error.value).startswith("<spec>:5:") and message in str(error.value)


def test_maf_on_an_image_is_refused_with_the_layers_line():
    text = "input: {shape: [1, 4, 4]}\nlayers:\n  - {kind: maf}\n"
    with pytest.raises(SpecError, match=r"<spec>:3:.*maf needs a vector input \(D,\)"):
        build_graph(loads_spec(text))
