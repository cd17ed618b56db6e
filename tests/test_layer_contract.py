"""One contract test over every registered layer kind and every example config of it (float64).

For each config: round trip, log-det against ``slogdet`` of the autograd Jacobian, inverse
log-det = -forward, ``generate`` = the inverse exactly, inferred shape = real shape, cost rule's
parameter count = real one, gradients reach every parameter, a state dict saved with
``torch.save`` loads (``weights_only=True``) into a fresh module with equal outputs, and invertible
backprop's gradients equal standard autograd's; for every kind with buffers, the same training steps
with invertible backprop on and off leave the same buffers and the same evaluation outputs (a
recomputation pass changes no state).

Couplings are enumerated from the registries: every transform kind (and each value of its options)
x every mask x every conditioner kind, with and without a context, so a newly registered kind is
covered at once, those of the example plugin package (tests/plugin_example, registered through its
``flowspec.kinds`` entry point while this module runs) included. A kind without hand-written
examples is tested at its defaults.
``split`` factors out a latent instead of mapping x -> y, so it has its own contract below.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch.distributions import Normal

import typing

from flowspec.compile.invertible_backprop import invertible_run, run_layers
from flowspec.layers import LAYER_KINDS
from flowspec.layers.actnorm import ActNormConfig
from flowspec.layers.batchnorm import BatchNormConfig
from flowspec.layers.conditioners import CONDITIONER_KINDS, ConvConditioner, MLPConditioner
from flowspec.layers.coupling import MASKS, SPATIAL_MASKS, CouplingConfig
from flowspec.layers.transforms import TRANSFORM_KINDS
from flowspec.layers.invconv import InvConvConfig
from flowspec.layers.maf import MAFConfig
from flowspec.layers.permute import PermuteConfig
from flowspec.layers.scaling import ScalingConfig
from flowspec.layers.split import Split, SplitConfig
from flowspec.layers.squeeze import SqueezeConfig
from flowspec.layers.patchify import PatchifyConfig
from flowspec.layers.tarflow import TarFlowConfig
from plugin_install import example_plugin_installed

IMAGE = (4, 4, 4)
ODD_IMAGE = (3, 4, 4)  # odd channel count: unequal halves
VECTOR = (6,)
ODD_VECTOR = (5,)
SEQUENCE = (4, 3)  # 4 tokens of 3 channels (what patchify makes of an image)

CONV = ConvConditioner(hidden=8, kernel=3, depth=2)
MLP = MLPConditioner(hidden=[8, 8])


CONTEXT = (3,)  # a context vector the couplings' conditioners see


def option_variants(config_type) -> list:
    """The default config of a kind and one config per other value of each Literal / bool option."""
    out = [config_type()]
    for field_name, info in config_type.model_fields.items():
        if field_name in ("kind", "name"):
            continue
        if typing.get_origin(info.annotation) is typing.Literal:
            values = typing.get_args(info.annotation)
        elif info.annotation is bool:
            values = (True, False)
        else:
            continue
        out += [config_type(**{field_name: v}) for v in values if v != info.get_default(call_default_factory=True)]
    return out


#: one mask of each code path (a channel split, a pixel mask) is crossed with every transform and
#: conditioner; every other mask with every conditioner (default transform) and every transform (conv)
CROSSED_MASKS = ("channel", "checkerboard")


def _coupling_examples():
    """transforms (each option value) x masks x conditioners (narrowed), on the shapes each accepts;
    every other case also with a context. The masks beyond :data:`CROSSED_MASKS` share those masks'
    code paths but for which entries they pick, so they meet each transform and each conditioner
    once rather than every pair."""
    out = []
    conditioners = [c.narrow(8) for kind in CONDITIONER_KINDS.values() for c in option_variants(kind)]
    transforms = [t for kind in TRANSFORM_KINDS.values() for t in option_variants(kind)]
    default_transform = CouplingConfig().transform
    for transform in transforms:
        for conditioner in conditioners:
            image = conditioner.accepts == "image"
            for mask in MASKS:
                if mask in SPATIAL_MASKS and not image:
                    continue
                if mask not in CROSSED_MASKS and not (transform == default_transform or conditioner == CONV.narrow(8)):
                    continue
                for parity in (0, 1):
                    config = CouplingConfig(transform=transform, mask=mask, parity=parity, conditioner=conditioner)
                    shapes = [IMAGE, ODD_IMAGE] if image else [VECTOR, ODD_VECTOR]
                    if mask in SPATIAL_MASKS:
                        shapes = [IMAGE]
                    for shape in shapes:
                        out.append((config, shape, CONTEXT if len(out) % 2 else None))
        for mask, shape in (("channel", ODD_IMAGE), ("checkerboard", IMAGE)):  # Glow's interleaved parameters
            out.append((CouplingConfig(transform=transform, mask=mask, parity=1, layout="interleaved",
                                       conditioner=CONV), shape, None))
    out.append((CouplingConfig(parity="alternate", conditioner=CONV), IMAGE, None))  # built alone: its first copy
    return out


@pytest.fixture(autouse=True, scope="module")
def _example_plugin():
    with example_plugin_installed():
        yield


#: (config, input shape) examples per kind; every option of every kind appears at least once.
with example_plugin_installed():
    COUPLINGS = _coupling_examples()  # (CASES below likewise)
EXAMPLES: dict[str, list[tuple]] = {
    "actnorm": [(ActNormConfig(), IMAGE), (ActNormConfig(data_init=False), VECTOR)],
    "invconv": [(InvConvConfig(lu=True), IMAGE), (InvConvConfig(lu=False), IMAGE),
                (InvConvConfig(lu=True, seed=3), VECTOR), (InvConvConfig(lu=False, seed=1), ODD_VECTOR)],
    "coupling": COUPLINGS + [(CouplingConfig(parity="alternate", conditioner=MLP), VECTOR)],  # built as copy 0
    "permute": [(PermuteConfig(order="reverse"), IMAGE), (PermuteConfig(order="shuffle", seed=2), IMAGE),
                (PermuteConfig(order="shuffle"), VECTOR), (PermuteConfig(order="reverse"), SEQUENCE)],
    "scaling": [(ScalingConfig(), IMAGE), (ScalingConfig(), VECTOR)],
    "batchnorm": [(BatchNormConfig(), IMAGE), (BatchNormConfig(), VECTOR), (BatchNormConfig(affine=False), IMAGE)],
    "squeeze": [(SqueezeConfig(), IMAGE), (SqueezeConfig(), (1, 4, 6))],
    "maf": [(MAFConfig(hidden=8), VECTOR), (MAFConfig(hidden=8, order="reversed", depth=1), ODD_VECTOR, CONTEXT),
            (MAFConfig(hidden=4, order="random", seed=3, init="dense"), VECTOR, CONTEXT),
            (MAFConfig(hidden=8, transform="additive", activation="relu", init="masked"), VECTOR),
            (MAFConfig(hidden=8, transform={"kind": "affine", "scale": "sigmoid"}, activation="gelu"), ODD_VECTOR),
            (MAFConfig(hidden=8, transform={"kind": "affine", "scale": "tanh", "order": "shift_scale"}), VECTOR),
            (MAFConfig(hidden=8, transform={"kind": "spline", "bins": 4, "bound": 2.0}, activation="tanh"), VECTOR,
             CONTEXT),
            (MAFConfig(hidden=8, order="random", seed=1, transform="spline"), ODD_VECTOR)],
    "patchify": [(PatchifyConfig(patch=2), IMAGE), (PatchifyConfig(patch=2), (3, 2, 6)), (PatchifyConfig(patch=1), ODD_IMAGE)],
    "tarflow": [(TarFlowConfig(width=8, heads=2), SEQUENCE), (TarFlowConfig(width=8, order="reversed"), SEQUENCE, CONTEXT),
                (TarFlowConfig(width=6, heads=3, layers=1, position="sinusoidal"), ODD_VECTOR, CONTEXT),
                (TarFlowConfig(width=8, sampling="recompute", order="reversed"), VECTOR),
                (TarFlowConfig(width=8, sampling="jacobi", block=2, expansion=2), SEQUENCE, CONTEXT),
                (TarFlowConfig(width=8, transform="additive"), SEQUENCE),
                (TarFlowConfig(width=8, transform={"kind": "spline", "bins": 4, "bound": 2.0}), SEQUENCE)],
    "split": [(SplitConfig(prior="conditional"), IMAGE), (SplitConfig(prior="standard"), IMAGE),
              (SplitConfig(prior="conditional"), ODD_VECTOR), (SplitConfig(prior="standard"), VECTOR)],
}


def _id(config, shape, context=None) -> str:
    options = config.model_dump(exclude={"kind", "name"}, exclude_none=True)
    parts = []
    for key, value in options.items():
        if isinstance(value, dict):
            value = ".".join(f"{v}" for k, v in value.items() if k in ("kind", "scale"))
        parts.append(f"{key}={value}")
    suffix = "-context" if context else ""
    return f"{config.kind}[{','.join(parts)}]-{'x'.join(map(str, shape))}{suffix}"


def _cases(split: bool) -> list:
    """Every example, and every registered kind without examples at its defaults."""
    examples = [row if len(row) == 3 else (*row, None) for rows in EXAMPLES.values() for row in rows]
    for kind, config_type in LAYER_KINDS.items():
        if kind not in EXAMPLES:
            config = config_type()
            accepts = config.accepts
            if accepts == "sequence":
                examples.append((config, SEQUENCE, None))
                continue
            examples += [(config, shape, None) for shape in (IMAGE, VECTOR)
                         if accepts == "any" or (accepts == "image") == (len(shape) == 3)]
    return [pytest.param(config, shape, context, id=_id(config, shape, context))
            for config, shape, context in examples if config.factors_out == split]


with example_plugin_installed():
    CASES = _cases(split=False)
    SPLIT_CASES = [pytest.param(*case.values[:2], id=case.id) for case in _cases(split=True)]


def _make(config, shape, seed=0, context=None):
    torch.manual_seed(seed)
    layer = config.build(shape, context).double()
    with torch.no_grad():  # move off identity / zero inits
        for parameter in layer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return layer.eval()


def _reloaded(layer, config, shape, context=None):
    """A freshly built module of ``config`` given ``layer``'s state dict through torch.save/load."""
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = config.build(shape, context).double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


@pytest.mark.parametrize("config, shape, context", CASES)
def test_layer_contract(config, shape, context):
    torch.manual_seed(1)
    layer = _make(config, shape, context=context)
    x = torch.randn(3, *shape, dtype=torch.float64)
    c = torch.randn(3, *context, dtype=torch.float64) if context else None

    # inferred shape == real shape
    config.check_input(shape)
    y, logdet = layer(x, c)
    assert tuple(y.shape[1:]) == tuple(config.output_shape(shape))
    assert logdet.shape == (3,)
    # the pure cost rule counts the parameters the module really has
    assert config.cost(shape, context).params == sum(p.numel() for p in layer.parameters())

    # round trip, inverse log-det = -forward
    x_back, inverse_logdet = layer.inverse(y, c)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10,
                               msg=lambda m: f"round trip failed\nx={x}\ny={y}\nx2={x_back}\n{m}")
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-10, atol=1e-10)
    # sampling's direction (which may skip the log-det) is the inverse, to the bit
    torch.testing.assert_close(layer.generate(y, None, 1.0, c), x_back, rtol=0, atol=0)

    # log-det == log|det J| of the autograd Jacobian, per example
    for i in range(x.shape[0]):
        def flat(v):
            return layer(v.view(1, *shape), None if c is None else c[i:i + 1])[0].flatten()
        jacobian = torch.autograd.functional.jacobian(flat, x[i].flatten())
        sign, reference = torch.linalg.slogdet(jacobian)
        assert sign != 0
        torch.testing.assert_close(logdet[i], reference, rtol=1e-8, atol=1e-8)

    # the context reaches the output
    if c is not None:
        y_other, _ = layer(x, c + 1.0)
        assert not torch.allclose(y_other, y), "the context does not change the output"

    # gradients reach every parameter
    layer.zero_grad()
    x_grad = x.clone().requires_grad_(True)
    c_grad = None if c is None else c.clone().requires_grad_(True)
    y, logdet = layer(x_grad, c_grad)
    ((y ** 2).sum() + logdet.sum()).backward()
    assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"
    standard = [x_grad.grad] + ([] if c is None else [c_grad.grad]) + [p.grad.clone() for p in layer.parameters()]

    # invertible backprop's gradients equal standard autograd's
    layer.zero_grad()
    x_inv = x.clone().requires_grad_(True)
    c_inv = None if c is None else c.clone().requires_grad_(True)
    y, logdet = invertible_run([layer], x_inv, c_inv)
    ((y ** 2).sum() + logdet.sum()).backward()
    recomputed = [x_inv.grad] + ([] if c is None else [c_inv.grad]) + [p.grad for p in layer.parameters()]
    for a, b in zip(recomputed, standard):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)

    # state dict round trip into a freshly built module
    fresh = _reloaded(layer, config, shape, context)
    fresh.eval()
    with torch.no_grad():
        y1, l1 = layer(x, c)
        y2, l2 = fresh(x, c)
    torch.testing.assert_close(y2, y1, rtol=0, atol=0)
    torch.testing.assert_close(l2, l1, rtol=0, atol=0)


def _with_buffers(cases) -> list:
    """The cases whose module has state besides its parameters (running averages, masks, ...): the
    first of each layer kind, and for couplings the first of each conditioner config (where a
    conditioner's batch norm lives)."""
    chosen: dict[tuple, object] = {}
    for case in cases:
        config, shape, context = case.values
        conditioner = getattr(config, "conditioner", None)
        key = (config.kind, None if conditioner is None else repr(conditioner))
        if key not in chosen and list(config.build(shape, context).buffers()):
            chosen[key] = case
    return list(chosen.values())


def _trained(config, shape, context, invertible: bool, steps: int = 4):
    """``config``'s layer after ``steps`` SGD steps in training mode, the batch and its context."""
    layer = _make(config, shape, seed=3, context=context).train()
    generator = torch.Generator().manual_seed(4)
    optimizer = torch.optim.SGD(list(layer.parameters()) or [torch.zeros(1, requires_grad=True)], lr=0.05)
    for _ in range(steps):
        x = torch.randn(8, *shape, dtype=torch.float64, generator=generator).requires_grad_(True)
        c = None if context is None else torch.randn(8, *context, dtype=torch.float64, generator=generator)
        optimizer.zero_grad()
        y, logdet = run_layers([layer], x, invertible, c)
        (0.5 * (y ** 2).flatten(1).sum(1) - logdet).mean().backward()
        optimizer.step()
    return layer.eval()


@pytest.mark.parametrize("config, shape, context", _with_buffers(CASES))
def test_invertible_backprop_leaves_the_same_state(config, shape, context):
    """The same training steps with invertible backprop on and off: the same buffers (batch norm's
    running averages are updated once per step, not again by the recomputation) and the same
    evaluation-mode outputs, in float64."""
    plain = _trained(config, shape, context, invertible=False)
    recomputed = _trained(config, shape, context, invertible=True)
    for (name, a), (_, b) in zip(plain.named_buffers(), recomputed.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=lambda m: f"buffer {name}: {m}")
    x = torch.randn(5, *shape, dtype=torch.float64)
    c = None if context is None else torch.randn(5, *context, dtype=torch.float64)
    with torch.no_grad():
        (y1, l1), (y2, l2) = plain(x, c), recomputed(x, c)
    torch.testing.assert_close(y2, y1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(l2, l1, rtol=1e-10, atol=1e-10)


def test_examples_cover_every_option():
    """Every Literal/bool option of every kind's config takes each of its values in EXAMPLES, and
    the couplings cover every registered transform, mask and conditioner."""
    for kind, examples in EXAMPLES.items():
        if kind not in LAYER_KINDS:
            continue
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
            seen = {getattr(config, field_name) for config, *_ in examples}
            assert values <= seen, f"{kind}.{field_name}: no example with {values - seen}"
    couplings = [config for config, *_ in EXAMPLES["coupling"]]
    assert {c.transform.kind for c in couplings} == set(TRANSFORM_KINDS)
    assert "softplus" in TRANSFORM_KINDS  # the example plugin's, through its entry point
    assert {c.conditioner.kind for c in couplings} == set(CONDITIONER_KINDS)
    assert {c.mask for c in couplings} == set(MASKS)


def test_row_shorthand_folds_into_the_affine_transform():
    config = CouplingConfig(scale="exp", clamp=1.5)
    assert (config.transform.scale, config.transform.clamp) == ("exp", 1.5)
    with pytest.raises(ValueError, match="scale applies to transform: affine, not additive"):
        CouplingConfig(transform="additive", scale="exp")


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
    torch.testing.assert_close(layer.generate(kept, eps, 0.0), layer.join(kept, mean))
    layer.zero_grad()
    factored_grad = factored.clone().requires_grad_(True)
    layer.log_prob(kept, factored_grad).sum().backward()
    torch.testing.assert_close(factored_grad.grad, -(factored - mean) / std ** 2)
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"

    # as a node: encode gives (kept, 0, (factored, log p)), decode joins it back
    y, logdet, out = layer.encode(x)
    torch.testing.assert_close(y, kept, rtol=0, atol=0)
    assert torch.equal(logdet, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(out.latent, factored, rtol=0, atol=0)
    torch.testing.assert_close(out.log_prob, layer.log_prob(kept, factored))
    torch.testing.assert_close(layer.decode(y, out.latent)[0], x, rtol=0, atol=0)

    # state dict round trip; forward/inverse are not a split's interface
    fresh = _reloaded(layer, config, shape)
    torch.testing.assert_close(fresh.log_prob(kept, factored), layer.log_prob(kept, factored), rtol=0, atol=0)
    with pytest.raises(TypeError, match="factors out"):
        layer(x)


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_reads_context_is_what_the_module_does(kind):
    """A kind's declared ``reads_context`` (the graph's context edges) is true exactly when its
    module, given a context, depends on it."""
    config, shape = next(((c, s) for c, s, *_ in (EXAMPLES.get(kind) or [(LAYER_KINDS[kind](), VECTOR)])
                          if LAYER_KINDS[kind].accepts != "image" or len(s) == 3), (None, None))
    if config is None:
        config, shape = LAYER_KINDS[kind](), IMAGE
    layer = _make(config, shape, context=CONTEXT)
    x = torch.randn(3, *shape, dtype=torch.float64)
    c = torch.randn(3, *CONTEXT, dtype=torch.float64)
    if config.factors_out:
        run = lambda context: layer.encode(x, context)[2].log_prob  # noqa: E731
    else:
        run = lambda context: layer(x, context)[0]  # noqa: E731
    with torch.no_grad():
        changes = not torch.allclose(run(c), run(c + 1.0))
    assert changes == config.reads_context, f"{kind}: reads_context={config.reads_context}, module reads it: {changes}"
