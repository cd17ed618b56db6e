"""``flowspec bench`` of a ``model: vae`` spec: the figures of :mod:`flowspec.bench.measure` that
apply to a VAE, on the CPU in float32.

* training-step throughput: images/s of one Adam step on the one-draw ``-ELBO`` in bits/dim
  (:meth:`~flowspec.vae.model.VAEModel.bits_per_dim`), and the same under CPU bf16 autocast;
* sampling throughput: images/s of :meth:`~flowspec.vae.model.VAEModel.sample` (``z ~ N(0, I)``,
  decoder, most likely level) in eval mode;
* achieved FLOP/s of a training step against the machine's measured conv peak, and the conv
  ceiling (the step's and the sampling pass's convolutions alone) for a conv VAE;
* activations a training step saves for backward (saved-tensor hooks).

Left out, with a line saying why: invertible backprop and inference folding (a flow's layers),
the other libraries' Glow, and the subprocess peak RSS (built around a flow's ``steps``).
"""

from __future__ import annotations

from typing import Callable

import torch

from flowspec.bench.ceiling import conv_floor, record_convs
from flowspec.bench.measure import (BenchReport, add_compiled, alternate, bf16_autocast, conv_peak_flops, count_flops,
                                    training_step)
from flowspec.bench.memory import saved_activation_bytes
from flowspec.vae.config import VAESpec
from flowspec.vae.graph import build_vae_graph
from flowspec.vae.model import VAEModel


def _loss(model: VAEModel) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: model.bits_per_dim(x).mean()


def bench_vae(spec_path: str, spec: VAESpec, batch: int = 16, repeats: int = 5, baselines: bool = True,
              memory: bool = True, seed: int = 0, overrides: list[str] | None = None,
              compile: bool = False) -> BenchReport:
    """Measure what the module docstring lists for ``spec``. ``overrides`` (``--set``) are already
    applied to ``spec``; unlike a flow's bench, no subprocess has to load the spec again."""
    graph = build_vae_graph(spec)
    return bench_latent_model(spec_path, lambda: VAEModel(graph), batch, repeats, baselines, memory, seed, compile)


def bench_latent_model(spec_path: str, make: Callable[[], torch.nn.Module], batch: int = 16, repeats: int = 5,
                       baselines: bool = True, memory: bool = True, seed: int = 0,
                       compile: bool = False) -> BenchReport:
    """:func:`bench_vae`'s figures for any latent-variable family whose models ``make()`` builds
    (a fresh one per call; :class:`~flowspec.core.protocol.DensityModel` with ``sample``)."""
    torch.manual_seed(seed)
    model = make().train()
    data = torch.randint(0, model.levels, (batch, *model.input_shape)).float()
    model.initialize(data)
    report = BenchReport(str(spec_path), batch, sum(p.numel() for p in model.parameters()))

    contestants = {"flowspec": training_step(_loss(model), model.parameters(), data)}
    low = make().train()
    low.load_state_dict(model.state_dict())
    contestants["flowspec bf16-autocast"] = training_step(bf16_autocast(_loss(low)), low.parameters(), data)
    sampler = make().eval()
    sampler.load_state_dict(model.state_dict())
    samplers = {"flowspec": lambda: sampler.sample(batch)}
    if compile:  # the same model under torch.compile (training.compile), alternating with the rest
        add_compiled(contestants, samplers, lambda training: make().train(training), model.state_dict(),
                     data, batch)

    seconds = alternate(contestants, repeats)
    report.train = {name: batch / s for name, s in seconds.items()}
    with torch.no_grad():
        seconds = alternate(samplers, repeats)
    report.sample = {name: batch / s for name, s in seconds.items()}
    train_floor = conv_floor(record_convs(contestants["flowspec"]))
    with torch.no_grad():
        sample_floor = conv_floor(record_convs(samplers["flowspec"]))
    if train_floor and sample_floor:
        report.train_ceiling["flowspec"], report.sample_ceiling["flowspec"] = batch / train_floor, batch / sample_floor
    else:
        report.skipped["ceiling flowspec"] = "no convolutions to bound it by (an mlp VAE)"

    report.step_flops = count_flops(lambda: _loss(model)(data).backward())
    model.zero_grad(set_to_none=True)
    report.conv_peak = conv_peak_flops(repeats)
    if memory:
        report.activations["standard"] = saved_activation_bytes(model, data, _loss(model))
        report.skipped["peak RSS"] = "measured for flows only (a subprocess built around a flow's steps)"
    report.skipped["invertible backprop, folding"] = "a flow's layers; a VAE has neither"
    if baselines:
        report.skipped["baselines"] = "normflows' and FrEIA's Glow compare with flows only"
    return report
