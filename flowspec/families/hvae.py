"""The ``hvae`` family: a hierarchical VAE with bidirectional inference and an IAF step per latent
layer (Kingma et al. 2016, arXiv:1606.04934; openai/iaf).

Its spec model and every stage are references, imported when first used (a spec with
``model: hvae``; :class:`~flowspec.family.Family`)."""

from flowspec.family import Family, register_family
from flowspec.spec.models import register_spec_model

register_spec_model("hvae", "flowspec.hvae.config:HVAESpec")

HVAE = register_family(Family(
    name="hvae", build_graph="flowspec.hvae.graph:build_hvae_graph", compile="flowspec.hvae.model:HVAEModel",
    cost_report="flowspec.hvae.costs:hvae_cost_report", measure="flowspec.hvae.measure:measure_hvae",
    check="flowspec.hvae.check:check_hvae", explicit_spec="flowspec.hvae.graph:explicit_hvae_spec",
    build_rows="flowspec.hvae.build:hvae_build_rows", export="flowspec.hvae.export:export_sampler",
    bench="flowspec.hvae.bench:bench_hvae", latents="flowspec.hvae.latents:HVAE_CODEC"))
