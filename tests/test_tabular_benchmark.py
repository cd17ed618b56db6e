"""``benchmarks/tabular.py`` compares like with like: at the same depth and width every library's MAF and
NSF has the same number of trainable parameters, and every NSF is the identity outside ``[-B, B]`` at
the benchmark's one bound ``B``, so no contestant gets a wider spline than another."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nflows")
pytest.importorskip("zuko")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import tabular  # noqa: E402


@pytest.mark.parametrize("spline", [False, True], ids=["maf", "nsf"])
def test_every_library_trains_as_many_parameters(spline):
    counts = {name: sum(p.numel() for p in build(7, 2, 12, spline, 5.0)[0].parameters())
              for name, build in tabular.LIBRARIES.items()}
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("name", list(tabular.LIBRARIES))
def test_every_nsf_is_the_identity_beyond_the_benchmarks_bound(name):
    """One layer, its parameters perturbed: an entry beyond ``B = 2`` whose conditioner sees only
    the context (the first in the order) leaves the layer unchanged; inside it moves."""
    torch.manual_seed(0)
    flow, _ = tabular.LIBRARIES[name](3, 1, 8, True, 2.0)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    x = torch.tensor([[2.5, 0.1, 0.2], [-3.0, 0.1, 0.2], [1.5, 0.1, 0.2]])
    if name == "zuko":
        y = flow().transform(x)
    elif name == "nflows":
        y, _ = flow._transform(x)
    else:
        (y,), _ = flow(x)
    assert torch.equal(y[:2, 0], x[:2, 0])
    assert not torch.isclose(y[2, 0], x[2, 0])


def test_flowspecs_activation_and_init_reach_its_made():
    torch.manual_seed(0)
    model, _ = tabular.flowspec_flow(4, 2, 8, False, 5.0, "relu", "dense")
    assert all(layer.conditioner.activation is torch.nn.functional.relu for layer in model.layers)
    assert all(layer.conditioner.hidden_layers[0].weight.abs().amax() <= 0.5 for layer in model.layers)


def test_flowspecs_maf_shift_gain_is_its_default_unless_set():
    default, _ = tabular.flowspec_flow(4, 2, 8, False, 5.0)
    plain, _ = tabular.flowspec_flow(4, 2, 8, False, 5.0, shift_gain=1.0)
    assert {layer.transform.shift_gain for layer in default.layers} == {3.0}
    assert {layer.transform.shift_gain for layer in plain.layers} == {1.0}
