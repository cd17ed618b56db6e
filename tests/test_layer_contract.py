"""One contract test over every registered layer kind and every example config of it (float64).

For each config: round trip, log-det against ``slogdet`` of the autograd Jacobian, inverse
log-det = -forward, inferred shape = real shape, cost rule's parameter count = real one, gradients reach every parameter, and a state
dict saved with ``torch.save`` loads (``weights_only=True``) into a fresh module with equal outputs.
``split`` factors out a latent instead of mapping x -> y, so it has its own contract below.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch.distributions import Normal

from flowspec.layers import LAYER_KINDS
from flowspec.layers.actnorm import ActNormConfig
from flowspec.layers.conditioners import ConvConditioner, MLPConditioner
from flowspec.layers.coupling import CouplingConfig
from flowspec.layers.invconv import InvConvConfig
from flowspec.layers.permute import PermuteConfig
from flowspec.layers.scaling import ScalingConfig
from flowspec.layers.split import Split, SplitConfig
from flowspec.layers.squeeze import SqueezeConfig

IMAGE = (4, 4, 4)
ODD_IMAGE = (3, 4, 4)  # odd channel count: unequal halves
VECTOR = (6,)
ODD_VECTOR = (5,)

CONV = ConvConditioner(hidden=8, kernel=3, depth=2)
MLP = MLPConditioner(hidden=[8, 8])


def _coupling_examples():
    out = []
    for transform in ("additive", "affine"):
        for scale in (("sigmoid", "exp") if transform == "affine" else ("sigmoid",)):
            for parity in (0, 1):
                for mask in ("channel", "checkerboard"):
                    config = CouplingConfig(transform=transform, mask=mask, parity=parity,
                                            scale=scale, clamp=1.5, conditioner=CONV)
                    out.append((config, IMAGE))
                    if mask == "channel":
                        out.append((config, ODD_IMAGE))
                        out.append((config.model_copy(update={"conditioner": MLP}), VECTOR))
                        out.append((config.model_copy(update={"conditioner": MLP}), ODD_VECTOR))
    return out


#: (config, input shape) examples per kind; every option of every kind appears at least once.
EXAMPLES: dict[str, list[tuple]] = {
    "actnorm": [(ActNormConfig(), IMAGE), (ActNormConfig(data_init=False), VECTOR)],
    "invconv": [(InvConvConfig(lu=True), IMAGE), (InvConvConfig(lu=False), IMAGE),
                (InvConvConfig(lu=True, seed=3), VECTOR), (InvConvConfig(lu=False, seed=1), ODD_VECTOR)],
    "coupling": _coupling_examples(),
    "permute": [(PermuteConfig(order="reverse"), IMAGE), (PermuteConfig(order="shuffle", seed=2), IMAGE),
                (PermuteConfig(order="shuffle"), VECTOR)],
    "scaling": [(ScalingConfig(), IMAGE), (ScalingConfig(), VECTOR)],
    "squeeze": [(SqueezeConfig(), IMAGE), (SqueezeConfig(), (1, 4, 6))],
    "split": [(SplitConfig(prior="conditional"), IMAGE), (SplitConfig(prior="standard"), IMAGE),
              (SplitConfig(prior="conditional"), ODD_VECTOR), (SplitConfig(prior="standard"), VECTOR)],
}


def _id(config, shape) -> str:
    options = config.model_dump(exclude={"kind", "name"}, exclude_defaults=False)
    parts = []
    for key, value in options.items():
        if isinstance(value, dict):
            value = value.get("kind")
        parts.append(f"{key}={value}")
    return f"{config.kind}[{','.join(parts)}]-{'x'.join(map(str, shape))}"


CASES = [pytest.param(config, shape, id=_id(config, shape))
         for kind, examples in EXAMPLES.items() for config, shape in examples
         if not LAYER_KINDS[kind].factors_out]
SPLIT_CASES = [pytest.param(config, shape, id=_id(config, shape))
               for kind, examples in EXAMPLES.items() for config, shape in examples
               if LAYER_KINDS[kind].factors_out]


def test_every_registered_kind_has_examples():
    missing = sorted(set(LAYER_KINDS) - set(EXAMPLES))
    assert not missing, f"add example configs to EXAMPLES for the new layer kind(s) {missing}"
    for kind, examples in EXAMPLES.items():
        assert kind in LAYER_KINDS, f"{kind} is not registered"
        assert all(config.kind == kind for config, _ in examples)


def _make(config, shape, seed=0):
    torch.manual_seed(seed)
    layer = config.build(shape).double()
    with torch.no_grad():
        for parameter in layer.parameters():  # move off identity / zero inits
            parameter.add_(0.05 * torch.randn_like(parameter))
    return layer.eval()


def _reloaded(layer, config, shape):
    """A freshly built module of ``config`` given ``layer``'s state dict through torch.save/load."""
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = config.build(shape).double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


@pytest.mark.parametrize("config, shape", CASES)
def test_layer_contract(config, shape, tmp_path):
    torch.manual_seed(1)
    layer = _make(config, shape)
    x = torch.randn(3, *shape, dtype=torch.float64)

    # inferred shape == real shape
    config.check_input(shape)
    y, logdet = layer(x)
    assert tuple(y.shape[1:]) == tuple(config.output_shape(shape))
    assert logdet.shape == (3,)
    # the pure cost rule counts the parameters the module really has
    assert config.cost(shape).params == sum(p.numel() for p in layer.parameters())

    # round trip, inverse log-det = -forward
    x_back, inverse_logdet = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10,
                               msg=lambda m: f"round trip failed\nx={x}\ny={y}\nx2={x_back}\n{m}")
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-10, atol=1e-10)

    # log-det == log|det J| of the autograd Jacobian, per example
    for i in range(x.shape[0]):
        def flat(v):
            return layer(v.view(1, *shape))[0].flatten()
        jacobian = torch.autograd.functional.jacobian(flat, x[i].flatten())
        sign, reference = torch.linalg.slogdet(jacobian)
        assert sign != 0
        torch.testing.assert_close(logdet[i], reference, rtol=1e-8, atol=1e-8)

    # gradients reach every parameter
    layer.zero_grad()
    x_grad = x.clone().requires_grad_(True)
    y, logdet = layer(x_grad)
    ((y ** 2).sum() + logdet.sum()).backward()
    assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"

    # state dict round trip into a freshly built module
    fresh = _reloaded(layer, config, shape)
    fresh.eval()
    with torch.no_grad():
        y1, l1 = layer(x)
        y2, l2 = fresh(x)
    torch.testing.assert_close(y2, y1, rtol=0, atol=0)
    torch.testing.assert_close(l2, l1, rtol=0, atol=0)


def test_examples_cover_every_option():
    """Every Literal/bool option of every kind's config takes each of its values in EXAMPLES."""
    import typing

    for kind, examples in EXAMPLES.items():
        config_type = LAYER_KINDS[kind]
        for field_name, info in config_type.model_fields.items():
            if field_name in ("kind", "name"):
                continue
            annotation = info.annotation
            if typing.get_origin(annotation) is typing.Literal:
                values = set(typing.get_args(annotation))
            elif annotation is bool:
                values = {True, False}
            else:
                continue
            seen = {getattr(config, field_name) for config, _ in examples}
            assert values <= seen, f"{kind}.{field_name}: no example with {values - seen}"
    conditioners = {(type(c.conditioner), len(shape)) for c, shape in EXAMPLES["coupling"]}
    assert conditioners == {(ConvConditioner, 3), (MLPConditioner, 1)}


@pytest.mark.parametrize("config, shape", SPLIT_CASES)
def test_split_contract(config, shape):
    torch.manual_seed(2)
    layer = _make(config, shape)
    assert isinstance(layer, Split)
    x = torch.randn(3, *shape, dtype=torch.float64)
    kept, factored = layer.split(x)
    assert tuple(kept.shape[1:]) == tuple(config.output_shape(shape))
    assert tuple(factored.shape[1:]) == tuple(config.factored_shape(shape))
    assert config.cost(shape).params == sum(p.numel() for p in layer.parameters())
    torch.testing.assert_close(layer.join(kept, factored), x, rtol=0, atol=0)

    # log_prob of the factored half equals a Normal computed independently
    if config.prior == "standard":
        mean = torch.zeros_like(factored)
        std = torch.ones_like(factored)
    else:
        net = layer.prior_net
        if len(shape) == 3:
            h = torch.nn.functional.conv2d(kept, net.weight, net.bias, padding=1)
        else:
            h = kept @ net.weight.T + net.bias
        mean, log_std = h[:, : factored.shape[1]], h[:, factored.shape[1]:]
        std = log_std.exp()
        assert not torch.allclose(mean, torch.zeros_like(mean))  # the prior net is in play
    expected = (-0.5 * ((factored - mean) / std) ** 2 - std.log()
                - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=torch.float64))).flatten(1).sum(1)
    torch.testing.assert_close(layer.log_prob(kept, factored), expected)
    torch.testing.assert_close(layer.log_prob(kept, factored),
                               Normal(mean, std).log_prob(factored).flatten(1).sum(1))

    # sampling at temperature 0 gives the prior mean; gradients reach the prior net
    eps = torch.randn_like(factored)
    torch.testing.assert_close(layer.generate(kept, eps, 0.0), mean)
    layer.zero_grad()
    factored_grad = factored.clone().requires_grad_(True)
    layer.log_prob(kept, factored_grad).sum().backward()
    torch.testing.assert_close(factored_grad.grad, -(factored - mean) / std ** 2)
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"

    # state dict round trip; forward/inverse are not a split's interface
    fresh = _reloaded(layer, config, shape)
    torch.testing.assert_close(fresh.log_prob(kept, factored), layer.log_prob(kept, factored), rtol=0, atol=0)
    with pytest.raises(TypeError, match="factors out"):
        layer(x)
