"""The ``vae`` family: a VAE whose posterior is refined by an IAF (Kingma et al. 2016).

Its spec model and every stage are references, imported when first used (a spec with
``model: vae``; :class:`~flowspec.family.Family`)."""

from flowspec.family import Family, register_family
from flowspec.spec.models import register_spec_model

register_spec_model("vae", "flowspec.vae.config:VAESpec")

VAE = register_family(Family(
    name="vae", build_graph="flowspec.vae.graph:build_vae_graph", compile="flowspec.vae.model:VAEModel",
    cost_report="flowspec.vae.costs:vae_cost_report", measure="flowspec.vae.measure:measure_vae",
    check="flowspec.vae.check:check_vae", explicit_spec="flowspec.vae.graph:explicit_vae_spec",
    build_rows="flowspec.vae.build:vae_build_rows", export="flowspec.vae.export:export_sampler",
    bench="flowspec.vae.bench:bench_vae", latents="flowspec.vae.latents:VAE_CODEC"))
