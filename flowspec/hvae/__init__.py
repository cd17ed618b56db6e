"""Hierarchical VAE with bidirectional inference and an IAF step per latent layer (Kingma et al.
2016, arXiv:1606.04934, sec. 6; openai/iaf): ``model: hvae``.

``flowspec.compile(spec)`` of a ``model: hvae`` spec returns a :class:`HVAEModel`. The torch parts
are imported lazily so the spec layer can import :mod:`flowspec.hvae.config` without them.
"""

from flowspec.hvae.config import HPosteriorConfig, HVAESpec, StemConfig

__all__ = ["HPosteriorConfig", "HVAEModel", "HVAESpec", "StemConfig", "build_hvae_graph"]


def __getattr__(name: str):
    if name == "HVAEModel":
        from flowspec.hvae.model import HVAEModel

        return HVAEModel
    if name == "build_hvae_graph":
        from flowspec.hvae.graph import build_hvae_graph

        return build_hvae_graph
    raise AttributeError(name)
