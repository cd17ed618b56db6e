"""``flowspec expand`` and ``flowspec build`` of a ``model: vae`` spec.

``expand`` writes every default out (the encoder's and decoder's kind resolved from the input's
shape); loading it back gives the same model. ``build`` writes the flow's folder layout:
``expanded.yaml``, ``model.pt`` (:func:`flowspec.load_model` reads it), ``diagram.svg``,
``report.md`` (:func:`~flowspec.vae.costs.vae_cost_report`) and ``sample.pt2``, the decoder path
as a ``torch.export`` program (:mod:`flowspec.vae.export`). Its table has one row per part of the
VAE (encoder, posterior sample, IAF steps, decoder, likelihood, prior) with the compiled parts'
parameter counts, which sum to the model's.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from torch import nn

from flowspec.compile.build import BuildResult, BuildRow, write_diagram_and_report
from flowspec.compile.export import save_model
from flowspec.vae.config import VAESpec
from flowspec.vae.costs import vae_parts
from flowspec.vae.export import export_sampler
from flowspec.vae.graph import VAEGraph, build_vae_graph, decoder_kind, encoder_kind
from flowspec.vae.model import VAEModel


def explicit_vae_spec(spec: VAESpec) -> dict:
    """The spec with every field written out, the networks' kinds resolved (what ``flowspec
    expand`` prints). Loading it back gives the same model."""
    data = spec.model_dump(mode="json")
    data["encoder"]["kind"] = encoder_kind(spec)
    data["decoder"]["kind"] = decoder_kind(spec)
    return data


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


def build_vae_folder(spec: VAESpec, folder: str | Path, export: bool = True) -> BuildResult:
    """Write the build folder of a VAE spec (see the module docstring)."""
    folder = Path(folder)
    graph = build_vae_graph(spec)
    model = VAEModel(graph).eval()
    result = BuildResult(graph, model, vae_build_rows(graph, model))
    folder.mkdir(parents=True, exist_ok=True)
    expanded = folder / "expanded.yaml"
    expanded.write_text(yaml.safe_dump(explicit_vae_spec(spec), sort_keys=False, default_flow_style=None))
    result.files["expanded spec"] = expanded
    save_model(model, folder / "model.pt")
    result.files["model"] = folder / "model.pt"
    write_diagram_and_report(result, folder)
    if export:
        for direction, path in export_sampler(model, folder).items():
            result.files[f"{direction} program"] = path
    return result
