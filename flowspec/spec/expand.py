"""Expand the compact forms of a spec (``levels``/``steps``/``step``, ``repeat``) into the
explicit list of layers, each remembering the YAML path it came from."""

from __future__ import annotations

from dataclasses import dataclass

from flowspec.layers.base import LayerConfig
from flowspec.layers.squeeze import SqueezeConfig
from flowspec.spec.models import RepeatBlock, Spec


@dataclass(frozen=True)
class ExpandedLayer:
    name: str
    config: LayerConfig
    path: tuple  # where in the YAML this layer is written
    level: int | None = None
    step: int | None = None


def _flatten(items, path: tuple, prefix: str, out: list, level=None, step=None) -> None:
    for index, item in enumerate(items):
        if isinstance(item, RepeatBlock):
            for _ in range(item.repeat):
                _flatten(item.layers, path + (index, "layers"), prefix, out, level, step)
            continue
        name = item.name or (f"{prefix}{item.kind}" if prefix else f"{len(out)}.{item.kind}")
        out.append(ExpandedLayer(name, item, path + (index,), level, step))


def expand(spec: Spec) -> list[ExpandedLayer]:
    """The explicit layer list: for the compact form, per level ``squeeze -> steps x step -> split``
    (no split after the last level)."""
    out: list[ExpandedLayer] = []
    if spec.layers is not None:
        _flatten(spec.layers, ("layers",), "", out)
    else:
        for level in range(spec.levels):
            out.append(ExpandedLayer(f"level{level}.squeeze", SqueezeConfig(), ("levels",), level))
            for k in range(spec.steps):
                _flatten(spec.step, ("step",), f"level{level}.step{k}.", out, level, k)
            if level < spec.levels - 1:
                out.append(ExpandedLayer(f"level{level}.split", spec.split, ("levels",), level))
    seen: dict[str, int] = {}
    for i, layer in enumerate(out):  # user names inside repeats must stay unique
        count = seen.get(layer.name, 0)
        seen[layer.name] = count + 1
        if count:
            out[i] = ExpandedLayer(f"{layer.name}#{count}", layer.config, layer.path, layer.level, layer.step)
    return out


def explicit_spec(spec: Spec) -> dict:
    """The spec with its layers written out one per row (what ``flowspec expand`` prints).
    Loading it back gives the same model."""
    data = spec.model_dump(mode="json", exclude={"layers", "levels", "steps", "step", "split"})
    data["layers"] = [layer.config.model_dump(mode="json", exclude_none=True) | {"name": layer.name}
                      for layer in expand(spec)]
    return data
