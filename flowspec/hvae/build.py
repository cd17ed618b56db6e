"""``flowspec build`` of a ``model: hvae`` spec: one row per part of
:func:`~flowspec.hvae.costs.hvae_parts` with its compiled modules' parameters, which sum to the
model's."""

from __future__ import annotations

from torch import nn

from flowspec.core.build import BuildRow
from flowspec.hvae.costs import hvae_parts
from flowspec.hvae.graph import HVAEGraph
from flowspec.hvae.model import HVAEModel


def part_parameters(model: HVAEModel) -> dict[str, list[nn.Parameter]]:
    """The parameters of each part: the bottom-up pass (stem, up blocks), the top-down pass
    (learned top, down blocks without their IAF steps), the IAF steps, the decoder (its conv
    and the shared log-scale)."""
    iaf = [p for block in model.down if block.iaf is not None for p in block.iaf.parameters()]
    iaf_ids = {id(p) for p in iaf}
    down = [model.top] + [p for block in model.down for p in block.parameters() if id(p) not in iaf_ids]
    decoder = list(model.decoder.parameters()) + ([model.log_scale] if model.log_scale is not None else [])
    return {"bottom-up": list(model.stem.parameters()) + list(model.up.parameters()), "top-down": down,
            "iaf": iaf, "decoder": decoder}


def hvae_build_rows(graph: HVAEGraph, model: HVAEModel) -> list[BuildRow]:
    parts = part_parameters(model)
    return [BuildRow(index, part.name, part.kind, part.in_shape, part.out_shape,
                     sum(p.numel() for p in parts.get(part.name, [])))
            for index, part in enumerate(hvae_parts(graph))]
