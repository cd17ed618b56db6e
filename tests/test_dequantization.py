"""Dequantization (uniform and Flow++'s variational), the logit preprocessing and exact bits/dim.

* On a discrete distribution with known entropy, a fitted model's bits/dim is never below the
  entropy and comes close to it, for both dequantizers.
* The variational dequantizer's ``log q(u|x)`` equals ``log N(eps) - log|det|`` of the float64
  autograd Jacobian of ``h``; ``u`` stays in [0, 1); gradients reach the context network.
* The importance-weighted estimate is below the one-draw bound and settles as ``k`` grows.
* Logit preprocessing: its log-det is the autograd one, and ``log p(y) + log|dy/dv|`` is the
  density of ``v`` by change of variables through the whole flow.
* Spec errors name file, line and column.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import flowspec
from flowspec.bench.memory import saved_activation_bytes
from flowspec.dequant import ToModelSpace, VariationalDequantization, build_dequantizer
from flowspec.errors import SpecError

torch.set_num_threads(1)

PROBS = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1],
                      [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]], dtype=torch.float64)
#: entropy of the four independent categoricals, in bits per dimension
ENTROPY = float(-(PROBS * PROBS.log2()).sum(1).mean())
ALL_X = torch.tensor(list(itertools.product(range(4), repeat=4)), dtype=torch.float32)
WEIGHTS = torch.stack([PROBS[i, ALL_X[:, i].long()] for i in range(4)]).prod(0).float()

UNIFORM = "{kind: uniform}"
VARIATIONAL = "{kind: variational, steps: 2, hidden: 32, context: {hidden: 16, depth: 1}}"


def vector_spec(dequantization: str, extra: str = "") -> str:
    return f"""\
input: {{shape: [4], levels: 4}}
prior: standard
dequantization: {dequantization}
{extra}layers:
  - repeat: 4
    layers:
      - {{kind: actnorm}}
      - {{kind: invconv}}
      - {{kind: coupling, scale: exp, conditioner: {{kind: mlp, hidden: [64, 64]}}}}
"""


def expected_bpd(model, draws: int = 16) -> float:
    """``E_{x~P} E_q[-bound] / (D log 2)``, exact in ``x`` (all 256 values weighted by P)."""
    with torch.no_grad():
        return float(torch.stack([(WEIGHTS * model.bits_per_dim(ALL_X)).sum() for _ in range(draws)]).mean())


def fit(dequantization: str, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model = flowspec.compile(flowspec.loads_spec(vector_spec(dequantization)))
    model.initialize(ALL_X[torch.multinomial(WEIGHTS, 512, replacement=True)])
    before = expected_bpd(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = (WEIGHTS * model.bits_per_dim(ALL_X)).sum()  # the exact expectation over x
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, before, expected_bpd(model)


@pytest.mark.parametrize("dequantization", [UNIFORM, VARIATIONAL], ids=["uniform", "variational"])
def test_fitted_bits_per_dim_is_above_the_entropy_and_close_to_it(dequantization):
    model, before, after = fit(dequantization, steps=120)
    # the bound is >= the cross-entropy >= the entropy; 16 draws x 256 values keep the MC noise < 0.01
    assert after > ENTROPY - 0.02, (after, ENTROPY)
    assert after < ENTROPY + 0.25, (after, ENTROPY)
    assert after < before - 0.1, (before, after)
    iw = float((WEIGHTS * model.bits_per_dim(ALL_X, k=32).detach()).sum())
    assert ENTROPY - 0.02 < iw < after, (iw, after, ENTROPY)


@pytest.mark.slow
@pytest.mark.parametrize("dequantization", [UNIFORM, VARIATIONAL], ids=["uniform", "variational"])
def test_longer_fit_gets_closer_to_the_entropy(dequantization):
    model, _, after = fit(dequantization, steps=600)
    # measured: uniform 1.819, variational 1.790 against an entropy of 1.694 (the uniform bound
    # keeps a gap: a smooth flow cannot be flat inside each bin, which q(u|x) makes up for)
    assert ENTROPY - 0.02 < after < ENTROPY + 0.15, (after, ENTROPY)
    iw = float((WEIGHTS * model.bits_per_dim(ALL_X, k=64).detach()).sum())
    assert ENTROPY - 0.02 < iw < ENTROPY + 0.1, (iw, ENTROPY)


# -- the variational dequantizer ---------------------------------------------------------------
def randomized(module: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> torch.nn.Module:
    """Every parameter perturbed, so zero-initialised layers (identity couplings) do something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


DEQUANTIZER_CASES = [((4,), 4, {}), ((5,), 17, {"steps": 3}), ((1, 4, 4), 17, {}),
                     ((2, 2, 3), 256, {"steps": 3, "context": {"hidden": 8, "depth": 2, "kernel": 1}})]


@pytest.mark.parametrize("shape,levels,fields", DEQUANTIZER_CASES, ids=lambda c: str(c))
def test_log_q_equals_the_autograd_jacobian(shape, levels, fields):
    config = VariationalDequantization(hidden=8, **fields)
    dequantizer = randomized(build_dequantizer(config, shape, levels).double())
    torch.manual_seed(0)
    x = torch.randint(0, levels, (3, *shape)).double()
    eps = torch.randn(3, *shape, dtype=torch.float64)
    u, logdet = dequantizer.transform(eps, x)
    d = math.prod(shape)
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(
            lambda e: dequantizer.transform(e.view(1, *shape), x[i:i + 1])[0].flatten(), eps[i].flatten())
        sign, expected = torch.linalg.slogdet(jacobian.view(d, d))
        assert sign != 0
        assert torch.allclose(logdet[i], expected, atol=1e-8), (logdet[i], expected)
    # and forward's log q is log N(eps) - that log-det, with the same eps
    torch.manual_seed(5)
    v, log_q = dequantizer(x)
    torch.manual_seed(5)
    eps = torch.randn_like(x)
    u, logdet = dequantizer.transform(eps, x)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(eps).flatten(1).sum(1)
    assert torch.allclose(v, x + u) and torch.allclose(log_q, normal - logdet)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_u_stays_in_the_unit_interval_and_v_in_its_bin(dtype):
    config = VariationalDequantization(hidden=8)
    dequantizer = randomized(build_dequantizer(config, (1, 4, 4), 17).to(dtype))
    x = torch.randint(0, 17, (64, 1, 4, 4)).to(dtype)
    for scale in (1.0, 10.0, 1e3, 1e6):  # far tails of eps saturate the sigmoid
        eps = scale * torch.randn(64, 1, 4, 4, dtype=dtype)
        u, _ = dequantizer.transform(eps, x)
        assert bool((u >= 0).all()) and bool((u < 1).all()), scale
        torch.manual_seed(0)
        v, log_q = dequantizer(x + 0 * eps)  # forward keeps v = x + u in x's bin
        assert torch.equal(torch.floor(v), x) and bool(torch.isfinite(log_q).all())
    big = torch.full((4, 1, 4, 4), 16.0, dtype=dtype)  # x + (1 - ulp) rounds to 17 in float32
    from flowspec.dequant.uniform import in_bin
    v = in_bin(big, torch.full_like(big, 1.0).nextafter(torch.zeros_like(big)))
    assert torch.equal(torch.floor(v), big)


def test_gradients_reach_the_context_network_and_every_dequantizer_parameter():
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(vector_spec(VARIATIONAL)))
    model.initialize(ALL_X)
    randomized(model.dequantizer, scale=0.1)
    model.bits_per_dim(ALL_X[:64]).mean().backward()
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("dequantizer.context.") for n in names)
    for name, parameter in model.named_parameters():
        if name.startswith("dequantizer."):
            assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0, name


def test_variational_model_round_trips_through_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(vector_spec(VARIATIONAL)))
    model.initialize(ALL_X)
    randomized(model.dequantizer)
    flowspec.save_model(model, tmp_path / "m.pt")
    loaded = flowspec.load_model(tmp_path / "m.pt").eval()
    model.eval()
    torch.manual_seed(3)
    expected = model.bits_per_dim(ALL_X[:16])
    torch.manual_seed(3)
    assert torch.allclose(loaded.bits_per_dim(ALL_X[:16]), expected)


# -- bits/dim and the importance-weighted estimate --------------------------------------------
def test_bits_per_dim_is_minus_the_bound_over_d_log_2():
    torch.manual_seed(0)
    model = flowspec.compile(flowspec.loads_spec(vector_spec(VARIATIONAL)))
    randomized(model.dequantizer, scale=0.1)
    x = ALL_X[:8]
    torch.manual_seed(1)
    v, log_q = model.dequantizer(x)
    expected = -(model.log_prob(v / 4 - 0.5) - log_q - 4 * math.log(4)) / (4 * math.log(2))
    torch.manual_seed(1)
    assert torch.allclose(model.bits_per_dim(x), expected, atol=1e-5)


def test_importance_weighted_estimate_is_below_the_one_draw_bound_and_settles():
    model, _, _ = fit(VARIATIONAL, steps=30)
    x = ALL_X
    torch.manual_seed(0)
    with torch.no_grad():
        one = torch.stack([model.bits_per_dim(x) for _ in range(64)]).mean(0)
        # E_x E[IW_k], averaged over repeats so that the comparisons are not drowned in noise
        iw = {k: torch.stack([model.bits_per_dim(x, k=k) for _ in range(max(1, 64 // k))]).mean(0)
              for k in (1, 4, 16, 64, 256)}
    mean = {k: float((WEIGHTS * value).sum()) for k, value in iw.items()}
    assert abs(mean[1] - float((WEIGHTS * one).sum())) < 0.01  # k = 1 is the one-draw bound
    assert mean[1] > mean[4] > mean[16] - 2e-3 > mean[64] - 4e-3, mean  # E[IW_k] falls with k
    assert abs(mean[256] - mean[64]) < abs(mean[4] - mean[1]) / 2, mean  # and settles
    assert mean[256] < mean[1] and mean[256] > ENTROPY - 0.02, mean


# -- logit preprocessing -----------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.05, 1e-3, 0.3])
def test_logit_log_det_is_the_autograd_one(alpha):
    space = ToModelSpace(levels=17, logit_alpha=alpha)
    v = torch.rand(5, 3, dtype=torch.float64) * 17
    y, logdet = space(v)
    for i in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda row: space(row.view(1, 3))[0].flatten(), v[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jacobian)[1], atol=1e-10)
    assert torch.allclose(space.inverse(y), v, atol=1e-9)


def test_logit_model_density_is_the_density_of_the_data_by_change_of_variables():
    spec = flowspec.loads_spec(vector_spec(UNIFORM, "preprocess: {kind: logit, alpha: 0.05}\n"))
    torch.manual_seed(0)
    model = randomized(flowspec.compile(spec), scale=0.1).double().eval()
    model.initialize(ALL_X.double())
    v = ALL_X[:6].double() + torch.rand(6, 4, dtype=torch.float64)
    y, pre_logdet = model.to_model_space(v)
    density = model.log_prob(y) + pre_logdet  # what the bound uses for log p(v)
    for i in range(6):
        def v_to_z(row):
            zs, _ = model(model.to_model_space(row.view(1, 4))[0])
            return zs[-1].flatten()
        z = v_to_z(v[i])
        jacobian = torch.autograd.functional.jacobian(v_to_z, v[i])
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        assert torch.allclose(density[i], log_pz + torch.linalg.slogdet(jacobian)[1], atol=1e-8)
    assert torch.equal(model.to_data_space(y), ALL_X[:6].double())


def test_logit_preprocessing_enters_bits_per_dim():
    spec = flowspec.loads_spec(vector_spec(UNIFORM, "preprocess: {kind: logit, alpha: 0.05}\n"))
    torch.manual_seed(0)
    model = flowspec.compile(spec)
    x = ALL_X[:8]
    torch.manual_seed(2)
    v, _ = model.dequantizer(x)
    p = 0.05 + 0.9 * v / 4
    y = torch.log(p / (1 - p))
    log_det = (math.log(0.9 / 4) - torch.log(p) - torch.log(1 - p)).sum(1)
    torch.manual_seed(2)
    assert torch.allclose(model.bits_per_dim(x), -(model.log_prob(y) + log_det) / (4 * math.log(2)), atol=1e-5)


# -- the graph and the spec's errors ------------------------------------------------------------
def test_graph_has_a_dequantizer_cluster_with_shapes():
    text = open("specs/glow-digits-vardeq.yaml").read()
    flow = flowspec.build_graph(flowspec.loads_spec(text, "specs/glow-digits-vardeq.yaml"))
    graph = flow.graph
    cluster = [n for n, d in graph.nodes(data=True) if d.get("cluster") == "dequantizer"]
    steps = flowspec.loads_spec(text).dequantization.steps
    assert len([n for n in cluster if graph.nodes[n]["kind"] == "coupling"]) == steps
    assert {"dequantizer.context", "dequantizer.sigmoid", "dequantizer.output"} <= set(cluster)
    assert graph.has_edge("dequantizer.output", "input")
    assert graph.edges["dequantizer.sigmoid", "dequantizer.output"]["shape"] == (1, 8, 8)
    assert graph.edges["dequantizer.context", "dequantizer.step0.coupling"]["shape"][1:] == (8, 8)
    for a, b, data in graph.edges(data=True):
        assert "shape" in data, (a, b)


def test_uniform_graph_has_its_cluster_too():
    graph = flowspec.build_graph(flowspec.loads_spec(vector_spec(UNIFORM))).graph
    assert graph.nodes["dequantizer.uniform"]["cluster"] == "dequantizer"


BAD = [
    ("input: {shape: [1], levels: 4}\ndequantization: {kind: variational}\nlayers: [{kind: actnorm}]\n",
     r"spec.yaml:2:\d+: dequantization.kind: variational dequantization couples halves"),
    (vector_spec("{kind: variational, context: {kind: conv}}"),
     r"spec.yaml:3:\d+: dequantization.context.kind: a conv context network needs an image"),
    ("input: {shape: [1, 4, 4], levels: 4}\ndequantization:\n  kind: variational\n  context: {kind: mlp}\n"
     "layers: [{kind: actnorm}]\n", r"spec.yaml:4:\d+: dequantization.context.kind: an mlp context"),
    ("input: {shape: [1, 1, 1], levels: 4}\ndequantization: {kind: variational}\nlayers: [{kind: actnorm}]\n",
     r"spec.yaml:2:\d+: dequantization.kind: .*at least 2 pixels"),
    (vector_spec("{kind: variational, context: {kernel: 2}}"), r"spec.yaml:3:\d+: dequantization.context.kernel: .*odd"),
    (vector_spec("{kind: variational, context: {hiden: 8}}"),
     r"spec.yaml:3:\d+: dequantization.context.hiden: unknown field 'hiden' \(hint: did you mean 'hidden'"),
    (vector_spec("{kind: variational, steps: 0}"), r"spec.yaml:3:\d+: dequantization.steps: "),
    (vector_spec("{kind: variatonal}"), r"spec.yaml:3:\d+: dequantization.kind: unknown kind 'variatonal'.*did you mean 'variational'"),
    (vector_spec(UNIFORM, "preprocess: {kind: logit, alpha: 0.5}\n"), r"spec.yaml:4:\d+: preprocess.alpha: alpha must be in \(0, 0.5\)"),
    (vector_spec(UNIFORM, "preprocess: {kind: logt}\n"), r"spec.yaml:4:\d+: preprocess.kind: unknown kind 'logt'"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_dequantization_fields_give_located_errors(text, message):
    with pytest.raises(SpecError, match=message):
        flowspec.build_graph(flowspec.loads_spec(text, "spec.yaml"))


# -- fuzzing the new fields: a SpecError or a working model, nothing else ------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.one_of(st.integers(-3, 9), st.floats(-1, 2), st.just(float("nan")), st.text(max_size=4), st.none(),
                    st.booleans(), st.lists(st.integers(0, 3), max_size=2))
_context = st.one_of(_values, st.dictionaries(st.sampled_from(["kind", "hidden", "depth", "kernel", "hiden"]),
                                              st.one_of(_values, st.sampled_from(["conv", "mlp"])), max_size=3))
_dequantization = st.one_of(_values, st.fixed_dictionaries(
    {"kind": st.sampled_from(["uniform", "variational", "variatonal"])},
    optional={"steps": _values, "hidden": st.one_of(_values, st.integers(1, 6)), "context": _context,
              "centred": _values, "extra": _values}))
_preprocess = st.one_of(st.none(), _values, st.fixed_dictionaries(
    {"kind": st.sampled_from(["logit", "logt"])}, optional={"alpha": _values}))
_shape = st.sampled_from([[1], [2], [5], [1, 1, 1], [1, 2, 2], [3, 4, 4], [2, 1, 3]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_shape, levels=st.sampled_from([2, 17, 256]), dequantization=_dequantization, preprocess=_preprocess)
def test_random_dequantization_sections_give_spec_errors_or_working_models(shape, levels, dequantization, preprocess):
    import yaml

    data = {"input": {"shape": shape, "levels": levels}, "prior": "standard", "dequantization": dequantization,
            "layers": [{"kind": "actnorm"}]}
    if preprocess is not None:
        data["preprocess"] = preprocess
    try:
        spec = flowspec.loads_spec(yaml.safe_dump(data), "fuzz.yaml")
        flowspec.build_graph(spec)
    except SpecError as error:
        assert all(p.line is not None for p in error.problems), str(error)
        return
    model = flowspec.compile(spec)
    x = torch.randint(0, levels, (3, *shape)).float()
    bpd = model.bits_per_dim(x)
    assert bpd.shape == (3,) and bool(torch.isfinite(bpd).all())


def _saved_elements(module, x) -> float:
    """Float32 elements of the distinct non-parameter tensors autograd saves in a training ``module(x)``."""
    return saved_activation_bytes(module, x, loss=module) / 4


@pytest.mark.parametrize("shape, config", [
    ((3, 8, 8), VariationalDequantization()),
    ((1, 8, 8), VariationalDequantization(steps=3, hidden=16, context={"hidden": 8, "depth": 1, "kernel": 1})),
    ((6,), VariationalDequantization()),
    ((5,), VariationalDequantization(steps=1, context={"kind": "mlp", "hidden": 4, "depth": 3})),
], ids=["image", "grey-image", "vector", "odd-vector"])
def test_the_cost_rule_counts_what_autograd_saves(shape, config):
    """The rule's activations per example and per call are exactly what a training pass of the
    module keeps for backward (batches 2 and 5 separate the two terms)."""
    torch.manual_seed(0)
    module = build_dequantizer(config, shape, 256).train()
    cost = config.cost(shape)
    for batch in (2, 5):
        x = torch.randint(0, 256, (batch, *shape)).float()
        assert _saved_elements(module, x) == batch * cost.activations + cost.call_activations


def test_the_report_row_of_the_dequantizer_is_what_it_saves():
    spec = flowspec.load_spec("specs/glow-digits-vardeq.yaml")
    from flowspec.report import report_spec

    batch = 3
    row = next(r for r in report_spec(spec, "a100", batch).rows if r.name == "dequantizer")
    module = build_dequantizer(spec.dequantization, tuple(spec.input.shape), spec.input.levels).train()
    x = torch.randint(0, spec.input.levels, (batch, *spec.input.shape)).float()
    assert row.train_bytes == 4 * _saved_elements(module, x)
