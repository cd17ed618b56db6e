"""The one model protocol (flowspec.core.protocol): every family takes the same keyword-only
options with the same meaning, and the pre-protocol positional forms still work for a release,
with a DeprecationWarning and the same numbers."""

from __future__ import annotations

import inspect

import pytest
import torch

import flowspec
from flowspec.core.protocol import DensityModel
from flowspec.errors import ConditionError

FLOW = """
input: {shape: [1, 4, 4], levels: 17}
levels: 2
steps: 1
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""

CONDITIONAL_FLOW = FLOW.replace("levels: 17}\n", "levels: 17}\ncondition: {kind: class, classes: 3, embed: 4}\n")

VAE = """\
model: vae
input: {shape: [1, 4, 4], levels: 17}
latent: 6
encoder: {kind: conv, hidden: 8, depth: 2, context: 5}
decoder: {kind: conv, hidden: 8, depth: 2}
likelihood: logistic
posterior: {kind: iaf, steps: 2, hidden: 12}
"""

HVAE = """\
model: hvae
input: {shape: [1, 4, 4], levels: 17}
latent: 2
hidden: 4
blocks: [1, 1]
kl_min: 0.1
"""

PROTOCOL = {"log_prob": ("condition",), "elbo": ("condition",), "bits_per_dim": ("condition", "k"),
            "loss_per_dim": ("condition", "k"), "sample": ("condition", "temperature", "generator"),
            "initialize": ("condition",)}


def model_of(text: str):
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(text)).double()
    x = data(model, 8, seed=3)
    labels = torch.arange(8) % 3 if getattr(model.spec, "condition", None) is not None else None
    model.initialize(x, condition=labels)
    return model


def data(model, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.levels, (n, *model.input_shape), generator=g).double()


def same_seed(fn, seed: int = 5):
    torch.manual_seed(seed)
    return fn()


@pytest.fixture(scope="module", params=["flow", "conditional flow", "vae", "hvae"])
def model(request):
    return model_of({"flow": FLOW, "conditional flow": CONDITIONAL_FLOW, "vae": VAE, "hvae": HVAE}[request.param])


def condition_for(model, n: int):
    return torch.arange(n) % 3 if getattr(model.spec, "condition", None) is not None else None


def test_every_family_implements_the_protocol_with_keyword_only_options(model):
    assert isinstance(model, DensityModel)
    for method, options in PROTOCOL.items():
        parameters = inspect.signature(getattr(model, method)).parameters
        for option in options:
            assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY, f"{type(model).__name__}.{method}: {option}"
    assert model.unit == "bits/dim"


def test_k_means_importance_samples_on_every_family(model):
    """``bits_per_dim(x, k=8)`` is the importance-weighted bound whatever the family (it once meant
    the condition 8 on a flow and k=8 on a VAE)."""
    x, c = data(model, 4), condition_for(model, 4)
    iw = same_seed(lambda: model.bits_per_dim(x, condition=c, k=8))
    assert torch.allclose(iw, same_seed(lambda: model.iw_bits_per_dim(x, 8, condition=c)))
    one = same_seed(lambda: model.bits_per_dim(x, condition=c))
    assert iw.shape == one.shape == (4,) and not torch.allclose(iw, one)
    assert torch.equal(same_seed(lambda: model.loss_per_dim(x, condition=c, k=8)), iw)


def test_an_unconditional_family_refuses_a_condition_in_one_line(model):
    if getattr(model.spec, "condition", None) is not None:
        with pytest.raises(ConditionError, match="conditional"):
            model.bits_per_dim(data(model, 2))
        return
    x = data(model, 2)
    for call in (lambda: model.bits_per_dim(x, condition=torch.tensor([0, 1])),
                 lambda: model.sample(2, condition=torch.tensor([0, 1])),
                 lambda: model.initialize(x, condition=torch.tensor([0, 1]))):
        with pytest.raises(ConditionError, match="unconditional"):
            call()


def test_the_old_positional_forms_warn_and_give_the_same_numbers():
    """The one test of the deprecated call forms (every other test calls the keyword forms)."""
    model = model_of(CONDITIONAL_FLOW)
    x, c = data(model, 4), torch.tensor([0, 1, 2, 0])
    new = same_seed(lambda: model.bits_per_dim(x, condition=c, k=3))
    with pytest.deprecated_call(match=r"FlowModel.bits_per_dim: positional condition, positional k are deprecated; pass condition=, k="):
        old = same_seed(lambda: model.bits_per_dim(x, c, 3))
    assert torch.equal(old, new)
    with pytest.deprecated_call(match=r"c= is deprecated; pass condition="):
        assert torch.equal(same_seed(lambda: model.elbo(x, c=c)), same_seed(lambda: model.elbo(x, condition=c)))
    y = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    with pytest.deprecated_call(match="context="):
        assert torch.equal(model.log_prob(y, context=c), model.log_prob(y, condition=c))
    with pytest.deprecated_call(match="positional temperature, positional generator, positional condition"):
        old = model.sample(4, 0.5, torch.Generator().manual_seed(2), c)
    assert torch.equal(old, model.sample(4, condition=c, temperature=0.5, generator=torch.Generator().manual_seed(2)))
    with pytest.deprecated_call(match="iw_bits_per_dim: positional condition"):
        old = same_seed(lambda: model.iw_bits_per_dim(x, 2, c))
    assert torch.equal(old, same_seed(lambda: model.iw_bits_per_dim(x, 2, condition=c)))
    # a VAE's old forms: bits_per_dim(x, k), sample(n, temperature, generator)
    model = model_of(VAE)
    x = data(model, 4)
    with pytest.deprecated_call(match=r"VAEModel.bits_per_dim: positional k is deprecated; pass k="):
        old = same_seed(lambda: model.bits_per_dim(x, 8))
    assert torch.equal(old, same_seed(lambda: model.bits_per_dim(x, k=8)))
    with pytest.deprecated_call(match="positional temperature"):
        old = model.sample(3, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(old, model.sample(3, temperature=0.7, generator=torch.Generator().manual_seed(1)))


def test_the_new_forms_do_not_warn(recwarn, model):
    x, c = data(model, 2), condition_for(model, 2)
    model.bits_per_dim(x, condition=c, k=2)
    model.loss_per_dim(x, condition=c)
    model.sample(2, condition=c, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_a_misused_old_form_is_a_type_error():
    model = model_of(FLOW)
    x = data(model, 2)
    with pytest.raises(TypeError, match="at most 3 positional"):
        model.bits_per_dim(x, None, 1, 2)
    with pytest.raises(TypeError, match="both 'c' and 'condition'"):
        model.bits_per_dim(x, c=None, condition=None)
    with pytest.raises(TypeError, match="multiple values for argument 'k'"):
        model.bits_per_dim(x, None, 2, k=2)


def test_encode_and_decode_are_protocol_methods_on_every_family():
    for text in (FLOW, VAE, HVAE):
        model = model_of(text).float()
        x = data(model, 3).float()
        latents = model.encode(x)
        back = model.decode(latents)
        assert back.shape == x.shape
        if text is FLOW:
            assert torch.equal(back, x)  # a flow decodes its own encoding exactly
