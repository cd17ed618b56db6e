"""The ``vae`` family: a VAE whose posterior is refined by an IAF (Kingma et al. 2016).

Its spec model registers here (``model: vae`` parses once this module is imported); every stage is
a reference, imported when first used (:class:`~flowspec.family.Family`)."""

import flowspec.vae.config  # noqa: F401  (registers the VAE spec model)
from flowspec.family import Family, register_family

VAE = register_family(Family(
    name="vae", build_graph="flowspec.vae.graph:build_vae_graph", compile="flowspec.vae.model:VAEModel",
    cost_report="flowspec.vae.costs:vae_cost_report", measure="flowspec.vae.measure:measure_vae",
    check="flowspec.vae.check:check_vae", explicit_spec="flowspec.vae.graph:explicit_vae_spec",
    build_rows="flowspec.vae.build:vae_build_rows", export="flowspec.vae.export:export_sampler",
    bench="flowspec.vae.bench:bench_vae", latents="flowspec.vae.latents:VAE_CODEC"))
