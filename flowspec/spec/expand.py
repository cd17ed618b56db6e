"""Expand the compact forms of a spec (``levels``/``steps``/``step``, ``repeat``) into the
explicit list of layers, each remembering the YAML path it came from.

A row written once and expanded many times gets the config of its copy: the k-th copy (counted
over every enclosing repeat and every compact-form step and level, in flow order) is
``config.copy_at(k)``, so ``parity: alternate`` gives 0, 1, 0, ...

The layer count is computed from the compact form first (``levels * (1 + steps * len(step)) +
levels - 1``, a repeat block counting ``repeat * len(layers)``, nested blocks multiplying), and a
spec past :data:`MAX_LAYERS` is refused before a single row is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowspec.errors import Problem, SpecError
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


MAX_LAYERS = 5000  # Glow on 64x64 images (4 levels x 48 steps) has 583


def _count(items) -> int:
    """Layers of a list of rows once expanded (exact integers: ``repeat: 10**9`` costs nothing)."""
    return sum(item.repeat * _count(item.layers) if isinstance(item, RepeatBlock) else 1 for item in items)


def layer_count(spec: Spec) -> int:
    """How many layers :func:`expand` would produce, computed from the compact form."""
    if spec.layers is not None:
        return _count(spec.layers)
    return spec.levels * (1 + spec.steps * _count(spec.step)) + spec.levels - 1


def _heaviest_repeat(items, path: tuple) -> tuple | None:
    """The path of the ``repeat`` field of the outermost repeat block that weighs most in ``items``."""
    blocks = [(item.repeat * _count(item.layers), index) for index, item in enumerate(items)
              if isinstance(item, RepeatBlock)]
    return path + (max(blocks)[1], "repeat") if blocks else None


def check_layer_count(spec: Spec) -> int:
    """The layer count, or a :class:`SpecError` located at the repeat (or ``steps``) that takes it
    past :data:`MAX_LAYERS`."""
    count = layer_count(spec)
    if count <= MAX_LAYERS:
        return count
    if spec.layers is not None:
        path = _heaviest_repeat(spec.layers, ("layers",)) or ("layers",)
    else:
        path = _heaviest_repeat(spec.step, ("step",)) or ("steps",)
    written = f"{count:,}" if count < 10 ** 18 else f"about {float(count):.3g}" if count < 10 ** 300 else "over 1e300"
    message = f"expands to {written} layers, more than the limit of {MAX_LAYERS:,}"
    hint = "the limit keeps validating, reporting and building bounded; lower the repeat or steps"
    source = getattr(spec, "source", None)
    raise SpecError(source.problem(message, path, hint) if source else Problem(message, path, hint=hint))


def _flatten(items, path: tuple, prefix: str, out: list, copies: dict, level=None, step=None) -> None:
    """Append the rows of ``items`` to ``out``; ``copies`` counts how often each row (by its YAML
    path) has been written, and the row's config is that copy's (:meth:`LayerConfig.copy_at`)."""
    for index, item in enumerate(items):
        if isinstance(item, RepeatBlock):
            for _ in range(item.repeat):
                _flatten(item.layers, path + (index, "layers"), prefix, out, copies, level, step)
            continue
        where = path + (index,)
        copy = copies.get(where, 0)
        copies[where] = copy + 1
        name = item.name or (f"{prefix}{item.kind}" if prefix else f"{len(out)}.{item.kind}")
        out.append(ExpandedLayer(name, item.copy_at(copy), where, level, step))


def expand(spec: Spec) -> list[ExpandedLayer]:
    """The explicit layer list: for the compact form, per level ``squeeze -> steps x step -> split``
    (no split after the last level). Refuses a spec of more than :data:`MAX_LAYERS` layers first."""
    check_layer_count(spec)
    out: list[ExpandedLayer] = []
    copies: dict[tuple, int] = {}
    if spec.layers is not None:
        _flatten(spec.layers, ("layers",), "", out, {})
    else:
        for level in range(spec.levels):
            out.append(ExpandedLayer(f"level{level}.squeeze", SqueezeConfig(), ("levels",), level))
            for k in range(spec.steps):
                _flatten(spec.step, ("step",), f"level{level}.step{k}.", out, copies, level, k)
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
