"""``flowspec bench`` of a ``model: hvae`` spec: the VAE family's figures
(:func:`flowspec.vae.bench.bench_latent_model`: training-step and sampling throughput, bf16
autocast, achieved FLOP/s, the conv ceiling, saved activations) on a hierarchical VAE."""

from __future__ import annotations

from flowspec.bench.measure import BenchReport
from flowspec.hvae.config import HVAESpec
from flowspec.hvae.graph import build_hvae_graph
from flowspec.hvae.model import HVAEModel
from flowspec.vae.bench import bench_latent_model


def bench_hvae(spec_path: str, spec: HVAESpec, batch: int = 16, repeats: int = 5, baselines: bool = True,
               memory: bool = True, seed: int = 0, overrides: list[str] | None = None,
               compile: bool = False) -> BenchReport:
    """Measure ``spec`` (``overrides`` are already applied to it)."""
    graph = build_hvae_graph(spec)
    return bench_latent_model(spec_path, lambda: HVAEModel(graph), batch, repeats, baselines, memory, seed, compile)
