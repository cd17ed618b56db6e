"""``benchmarks/hierarchical_vae.py`` measures the recipes that ship: each contestant trains with
its spec's ``training:`` section as ``flowspec train`` does (optimizer, lr, weight decay, gradient
clipping, EMA) and is scored with the weights the spec evaluates, and the flat VAE stays as shipped
(with a second, averaged flat VAE beside it when only the hierarchical spec averages)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import flowspec
from flowspec.data.bundled import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import hierarchical_vae  # noqa: E402


def with_training(spec, **values):
    return spec.model_copy(update={"training": spec.training.model_copy(update=values)})


@pytest.fixture(scope="module")
def batch():
    return load_digits().train[:16].float()


def test_a_run_trains_with_its_specs_optimizer_and_clipping(batch):
    spec = with_training(flowspec.load_spec(hierarchical_vae.HIERARCHICAL), weight_decay=1e-5, grad_clip=3.0,
                         ema=None)
    run = hierarchical_vae.Run(spec, batch)
    optimizer = run.train_step.optimizer
    assert isinstance(optimizer, torch.optim.Adamax)
    assert optimizer.param_groups[0]["weight_decay"] == 1e-5
    assert run.train_step.clip == 3.0 and run.ema is None
    run.step(batch)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(spec.training.lr / spec.training.warmup)


def test_a_run_with_ema_is_scored_with_the_averaged_weights(batch):
    spec = with_training(flowspec.load_spec(hierarchical_vae.HIERARCHICAL), ema=0.9)
    run = hierarchical_vae.Run(spec, batch)
    for _ in range(3):
        run.step(batch)
    trained = {name: p.detach().clone() for name, p in run.model.named_parameters()}
    with run.evaluated() as model:
        inside = dict(model.named_parameters())
        assert all(torch.equal(inside[name], run.ema.shadow[name]) for name in trained)
        assert not all(torch.equal(inside[name], trained[name]) for name in trained)
    assert all(torch.equal(p, trained[name]) for name, p in run.model.named_parameters())


def test_without_ema_the_trained_weights_are_scored(batch):
    run = hierarchical_vae.Run(flowspec.load_spec(hierarchical_vae.FLAT), batch)
    run.step(batch)
    with run.evaluated() as model:
        assert model is run.model
    assert run.ema is None


def test_the_flat_vae_runs_as_shipped_and_averaged_beside_it_when_the_hierarchical_spec_averages(monkeypatch):
    shipped = flowspec.load_spec(hierarchical_vae.FLAT)
    hvae = flowspec.load_spec(hierarchical_vae.HIERARCHICAL)
    for decay in (None, 0.995):
        monkeypatch.setattr(hierarchical_vae.flowspec, "load_spec",
                            lambda path, d=decay: with_training(hvae, ema=d) if path == hierarchical_vae.HIERARCHICAL
                            else shipped)
        specs = hierarchical_vae.contestants()
        assert specs["flat+iaf"] is shipped
        averaged = [name for name in specs if name.startswith("flat+iaf ema")]
        if decay is None or decay == shipped.training.ema:
            assert averaged == []
        else:
            assert averaged == [f"flat+iaf ema={decay:g}"]
            assert specs[averaged[0]].training.ema == decay
            assert specs[averaged[0]].model_dump(exclude={"training"}) == shipped.model_dump(exclude={"training"})
