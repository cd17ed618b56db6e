"""The ``vae`` family: a VAE whose posterior is refined by an IAF (Kingma et al. 2016)."""

from flowspec.family import Family, register_family
from flowspec.vae.check import check_vae
from flowspec.vae.costs import vae_cost_report
from flowspec.vae.graph import build_vae_graph
from flowspec.vae.measure import measure_vae
from flowspec.vae.model import VAEModel

VAE = register_family(Family(name="vae", build_graph=build_vae_graph, compile=VAEModel, cost_report=vae_cost_report,
                             measure=measure_vae, check=check_vae, has_layer_list=False))
