"""``flowspec expand`` and ``flowspec build`` of a ``model: vae`` spec (the family's pieces that
:func:`flowspec.compile.build.build_folder` assembles).

``expand`` writes every default out (the encoder's and decoder's kind resolved from the input's
shape); loading it back gives the same model. ``build`` writes the flow's folder layout:
``expanded.yaml``, ``model.pt`` (:func:`flowspec.load_model` reads it), ``diagram.svg``,
``report.md`` (:func:`~flowspec.vae.costs.vae_cost_report`) and ``sample.pt2``, the decoder path
as a ``torch.export`` program (:mod:`flowspec.vae.export`). Its table has one row per part of the
VAE (encoder, posterior sample, IAF steps, decoder, likelihood, prior) with the compiled parts'
parameter counts, which sum to the model's.
"""

from __future__ import annotations


from torch import nn

from flowspec.core.build import BuildRow
from flowspec.vae.config import VAESpec
from flowspec.vae.costs import vae_parts
from flowspec.vae.graph import VAEGraph, explicit_vae_spec  # noqa: F401  (explicit_vae_spec: its old home)
from flowspec.vae.model import VAEModel


def part_modules(model: VAEModel) -> dict[str, nn.Module]:
    """The compiled module of each part of :func:`~flowspec.vae.costs.vae_parts` that holds weights
    (the posterior sample, likelihood and prior hold none)."""
    return {"encoder": model.encoder, **{f"iaf.{k}": step for k, step in enumerate(model.iaf)},
            "decoder": model.decoder}


def vae_build_rows(graph: VAEGraph, model: VAEModel) -> list[BuildRow]:
    """One row per part, with the parameters of its compiled module."""
    modules = part_modules(model)
    return [BuildRow(index, part.name, part.kind, part.in_shape, part.out_shape,
                     sum(p.numel() for p in modules[part.name].parameters()) if part.name in modules else 0)
            for index, part in enumerate(vae_parts(graph))]
