"""The ``vae`` family: a VAE whose posterior is refined by an IAF (Kingma et al. 2016)."""

from flowspec.family import Family, register_family
from flowspec.vae.build import explicit_vae_spec, vae_build_rows
from flowspec.vae.check import check_vae
from flowspec.vae.costs import vae_cost_report
from flowspec.vae.export import export_sampler
from flowspec.vae.graph import build_vae_graph
from flowspec.vae.latents import VAE_CODEC
from flowspec.vae.measure import measure_vae
from flowspec.vae.model import VAEModel


def bench_vae(*args, **kwargs):
    """:func:`flowspec.vae.bench.bench_vae`, imported on use (as the flow family's bench)."""
    from flowspec.vae.bench import bench_vae as measure_bench

    return measure_bench(*args, **kwargs)


VAE = register_family(Family(name="vae", build_graph=build_vae_graph, compile=VAEModel, cost_report=vae_cost_report,
                             measure=measure_vae, check=check_vae, explicit_spec=explicit_vae_spec,
                             build_rows=vae_build_rows, export=export_sampler, bench=bench_vae,
                             latents=VAE_CODEC))
