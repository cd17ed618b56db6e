"""``load_spec``: YAML file -> :class:`Spec`, with every pydantic error mapped to its YAML line."""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from flowspec.errors import Problem, SpecError
from flowspec.layers import LAYER_KINDS
from flowspec.layers.kinds import UNIONS, field_models, load_plugins
from flowspec.spec.expand import check_layer_count
from flowspec.spec.models import MAX_NAME_LENGTH, REPEAT_TAG, SPEC_MODELS, Spec, plain_name
from flowspec.spec.overrides import apply_overrides, parse_overrides
from flowspec.spec.yaml_source import SourceMap, load_yaml, read_yaml

MODELS = SPEC_MODELS  # filled as the families register (flowspec.families)


def _root_model(data) -> type[BaseModel]:
    """The top-level model of a spec: a flow, or a family's (``model: vae``, ``model: hvae``)."""
    return MODELS.get(data.get("model", "flow") if isinstance(data, dict) else "flow", Spec)


def _data_path(data, loc: tuple) -> tuple:
    """Drop the union tags pydantic puts in ``loc`` so the path indexes the YAML data."""
    path, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("kind"), REPEAT_TAG):
            continue  # a union tag: not in the data
        elif i == len(loc) - 1 or not isinstance(node, (dict, list)):
            path.append(part)  # a missing field, or a part of a scalar error
            break
        else:
            continue
        path.append(part)
    return tuple(path)


def _model_at(data, path: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` of the YAML data."""
    model: type[BaseModel] | None = _root_model(data)
    node, candidates = data, []
    for part in path:
        if isinstance(node, list):
            node = node[part] if isinstance(part, int) and part < len(node) else None
            model = _pick(candidates, node)  # this item's model, not the first item's
            continue
        if model is None:
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        node = node.get(part) if isinstance(node, dict) else None
        if field is None:
            return None
        candidates = field_models(field.annotation, field.metadata)
        model = _pick(candidates, node)
    return model


def _pick(candidates: list[type[BaseModel]], node) -> type[BaseModel] | None:
    if isinstance(node, list):
        node = node[0] if node else None
    if isinstance(node, str):
        node = {"kind": node}
    if isinstance(node, dict):
        if "repeat" in node:
            return next((c for c in candidates if "repeat" in c.model_fields), None)
        for c in candidates:
            kind = c.model_fields.get("kind")
            if kind is not None and kind.default == node.get("kind"):
                return c
    return candidates[0] if len(candidates) == 1 else None


def _did_you_mean(word: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(str(word), options, n=3, cutoff=0.5)
    known = ", ".join(sorted(options))
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}? known: {known}"
    return f"known: {known}"


def _problem(error: dict, data, source: SourceMap) -> Problem:
    loc = tuple(error["loc"])
    path = _data_path(data, loc)
    kind = error["type"]
    message, hint = error["msg"], None
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if kind == "extra_forbidden":
        model = _model_at(data, path[:-1])
        options = [f for f in model.model_fields] if model else []
        message = f"unknown field {path[-1]!r}"
        hint = _did_you_mean(path[-1], options) if options else None
    elif kind in ("union_tag_invalid", "missing_kind"):
        node = _node(data, path)
        tag = node.get("kind") if isinstance(node, dict) else error.get("ctx", {}).get("tag", node)
        registry = UNIONS.get(str(path[-1])) if path else None
        if tag is None and registry is not None:
            message, hint = f"each {path[-1]} needs a kind", f"known: {', '.join(sorted(registry))}"
        elif tag is None:
            message, hint = "each layer needs a kind (or repeat:)", "e.g. {kind: coupling}"
        else:
            message = f"unknown kind {tag!r}"
            hint = _did_you_mean(tag, _known_kinds(data, path, error))
            if isinstance(node, dict):
                path = path + ("kind",)
    elif kind == "missing":
        message = f"missing field {path[-1]!r}"
    return source.problem(message, path, hint)


def _known_kinds(data, path: tuple, error: dict) -> list[str]:
    """The kinds allowed at ``path``: layer kinds, or those of a nested union (conditioner, ...)."""
    expected = error.get("ctx", {}).get("expected_tags")
    registry = UNIONS.get(str(path[-1])) if path else None
    if registry is not None:
        return sorted(registry)
    if expected:
        return [t.strip(" '") for t in expected.split(",") if t.strip(" '") != REPEAT_TAG]
    return sorted(LAYER_KINDS)


def _node(data, path):
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def fields_at(data, path: tuple) -> list[str]:
    """The fields the spec allows in the mapping at ``path`` of the data (none if unknown)."""
    model = _model_at(data, path)
    return list(model.model_fields) if model is not None else []


def _literal_choices(annotation) -> tuple | None:
    """The values of a ``Literal[...]`` annotation (through Optional and Annotated), else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType):
        found = [c for arg in typing.get_args(annotation) for c in (_literal_choices(arg) or ())]
        return tuple(found) or None
    return None


def _literal_problems(value, data, path: tuple, source: SourceMap) -> list[Problem]:
    """Problems pydantic lets through: it compares literals with ``==``, so ``parity: true``
    passes as ``1`` and ``bf16: 1`` as ``true``. A literal's value must also have its type."""
    problems: list[Problem] = []
    if isinstance(value, BaseModel) and isinstance(data, dict):
        for name, field in type(value).model_fields.items():
            if name not in data:
                continue
            raw, choices = data[name], _literal_choices(field.annotation)
            if choices and raw is not None and not isinstance(raw, (str, dict)) and not any(type(raw) is type(c) and raw == c for c in choices):
                allowed = " or ".join("true" if c is True else "false" if c is False else repr(c) for c in choices)
                what = ("a boolean is not a number" if isinstance(raw, bool) else
                        "a number is not a boolean" if any(isinstance(c, bool) for c in choices) else f"got {raw!r}")
                problems.append(source.problem(f"Input should be {allowed} ({what})", path + (name,)))
            problems += _literal_problems(getattr(value, name), raw, path + (name,), source)
    elif isinstance(value, list) and isinstance(data, list):
        for index, (item, raw) in enumerate(zip(value, data)):
            problems += _literal_problems(item, raw, path + (index,), source)
    return problems


def spec_from_data(data, source: SourceMap, stored: bool = False, overrides=None) -> BaseModel:
    """Validate parsed YAML, after applying ``overrides`` (``PATH=VALUE`` strings or a mapping, see
    :mod:`flowspec.spec.overrides`); raise one :class:`SpecError` with every problem. ``stored``: the
    data come from a saved model or checkpoint, whose ``name`` may predate the plain-name rule; it
    is made plain instead of refused.

    Validation is strict: a boolean is not a count and a string is not a number (``steps: true``,
    ``steps: '8'`` and ``lu: 'yes'`` are errors), while an integer is a valid float.
    """
    load_plugins()
    if stored and isinstance(data, dict) and isinstance(data.get("name"), str):
        data = dict(data, name=plain_name_from(data["name"]))
    if not isinstance(data, dict):
        raise SpecError(source.problem(f"a spec is a YAML mapping, got {type(data).__name__}"))
    if overrides:
        data, source.overrides = apply_overrides(data, parse_overrides(overrides), fields_at)
    kind = data.get("model", "flow")
    if not isinstance(kind, str) or kind not in MODELS:
        raise SpecError(source.problem(f"unknown model {kind!r}", ("model",),
                                       _did_you_mean(kind, sorted(MODELS))))
    try:
        spec = MODELS[kind].model_validate(data, strict=True)
    except ValidationError as error:
        problems = [_problem(e, data, source) for e in error.errors()]
        raise SpecError(sorted(set(problems), key=lambda p: (p.line or 0, p.column or 0, p.message))) from None
    problems = _literal_problems(spec, data, (), source)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    if spec.name is None:
        spec = spec.model_copy(update={"name": plain_name_from(Path(source.file).stem if source.file != "<spec>" else "spec")})
    spec._source = source
    if isinstance(spec, Spec):
        check_layer_count(spec)
    return spec


def plain_name_from(text: str) -> str:
    """``text`` made a plain name (:func:`~flowspec.spec.models.plain_name`): other characters become
    ``_``, leading dots go, ``..`` becomes ``_``; ``spec`` if nothing is left."""
    name = re.sub(r"[^\w.-]", "_", text).lstrip(".-").replace("..", "_")[:MAX_NAME_LENGTH]
    try:
        return plain_name(name)
    except ValueError:
        return "spec"


def load_spec(path: str | Path, overrides=None) -> Spec:
    """Load and validate a spec file. Raises :class:`SpecError` naming file, line and field.

    ``overrides``: ``["steps=16", "step[2].conditioner.hidden=256"]`` (values read as YAML) or
    ``{"steps": 16}``, applied before validation, as ``flowspec ... --set`` does.
    """
    data, source = read_yaml(path)
    return spec_from_data(data, source, overrides=overrides)


def loads_spec(text: str, file: str = "<spec>", overrides=None) -> Spec:
    """Like :func:`load_spec`, from YAML text."""
    data, source = load_yaml(text, file)
    return spec_from_data(data, source, overrides=overrides)
