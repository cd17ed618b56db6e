"""VAE with an inverse autoregressive flow posterior (Kingma et al. 2016, arXiv:1606.04934).

``flowspec.compile(spec)`` of a ``model: vae`` spec returns a :class:`VAEModel`. The torch parts
are imported lazily so the spec layer can import :mod:`flowspec.vae.config` without them.
"""

from flowspec.vae.config import DecoderConfig, EncoderConfig, PosteriorConfig, VAESpec

__all__ = ["DecoderConfig", "EncoderConfig", "PosteriorConfig", "VAEModel", "VAESpec", "build_vae_graph"]


def __getattr__(name: str):
    if name == "VAEModel":
        from flowspec.vae.model import VAEModel

        return VAEModel
    if name == "build_vae_graph":
        from flowspec.vae.graph import build_vae_graph

        return build_vae_graph
    raise AttributeError(name)
