"""The JSON Schema (Draft 2020-12) of the spec format, for YAML editors and CI checks.

It is generated from the pydantic models, so a layer kind registered later appears in it at once,
and then made exact where pydantic's generator is looser than validation:

* strict types: pydantic's ``integer``, ``number`` and ``boolean`` already match strict loading
  (a boolean is no integer in JSON Schema, a string is no number);
* layer rows: a bare kind name (``- squeeze``) is a row (see ``_RowJsonSchema`` in
  :mod:`flowspec.spec.models`), as is a bare transform or conditioner (``transform: affine``), and
  every branch of a tagged union must write its tag (``kind``), as pydantic's discriminator
  requires (``{lu: true}`` is no row);
* the rules validators check in code, written as JSON Schema in :data:`RULES` (``clamp`` in
  (0, 50), ``input.shape`` not 2-D, layers or the compact form, ...).

What JSON Schema cannot say (shapes through the flow, ``8.0`` as a count, duplicate YAML keys)
only ``flowspec validate`` checks; docs/spec.md lists it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Union

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: Where the repository ships the schema (``flowspec schema -o schema/flowspec.schema.json``);
#: specs name it in a ``# yaml-language-server: $schema=...`` first line.
SHIPPED = Path(__file__).resolve().parents[2] / "schema" / "flowspec.schema.json"


class _Draft202012(GenerateJsonSchema):
    schema_dialect = DRAFT


def _absent_or_null(field: str) -> dict:
    return {"anyOf": [{"not": {"required": [field]}}, {"properties": {field: {"type": "null"}}}]}


def _given(field: str) -> dict:
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def _one_form(spec: dict) -> None:
    """``Spec._one_form``: a non-empty ``layers`` list, or all of ``levels``, ``steps``, ``step``
    (an absent field and ``null`` are the same)."""
    compact = ("levels", "steps", "step")
    for branch in spec["properties"]["layers"]["anyOf"]:
        if branch.get("type") == "array":
            branch["minItems"] = 1
    spec["oneOf"] = [
        {"allOf": [_given("layers")] + [_absent_or_null(f) for f in compact]},
        {"allOf": [_given(f) for f in compact] + [_absent_or_null("layers")]},
    ]


def _not_two_dimensional(input_spec: dict) -> None:
    """``InputSpec._image_or_vector``: ``[C, H, W]`` or ``[D]``, never ``[H, W]``."""
    input_spec["properties"]["shape"]["not"] = {"minItems": 2, "maxItems": 2}


def _open_interval(field: str, low: float, high: float) -> Callable[[dict], None]:
    def rule(model: dict) -> None:
        model["properties"][field].update(exclusiveMinimum=low, exclusiveMaximum=high)

    rule.__doc__ = f"``{field}`` in ({low}, {high})."
    return rule


def _odd(field: str) -> Callable[[dict], None]:
    def rule(model: dict) -> None:
        model["properties"][field]["not"] = {"multipleOf": 2}

    rule.__doc__ = f"``{field}`` odd."
    return rule


def _affine_options(coupling: dict) -> None:
    """``CouplingConfig._affine_options``: ``scale`` and ``clamp`` on a row are short for the
    affine transform's fields, so another transform rules them out."""
    affine = {"anyOf": [{"const": "affine"}, {"type": "object", "properties": {"kind": {"const": "affine"}}}]}
    coupling.setdefault("allOf", []).extend(
        {"if": _given(field), "then": {"properties": {"transform": affine}}} for field in ("scale", "clamp"))


def _plain_name(model: dict) -> None:
    """``plain_name``: no ``..`` in a spec's name (the pattern and length are in the model)."""
    model["properties"]["name"]["not"] = {"type": "string", "pattern": r"\.\."}


def _steps_or_epochs(training: dict) -> None:
    """``TrainingConfig._steps_or_epochs``: not both ``steps`` and ``epochs`` (``null`` is neither)."""
    training["not"] = {"allOf": [_given("steps"), _given("epochs")]}


#: The rules field and model validators check in code, as JSON Schema, by model (``$defs``) name.
#: A validator added to a model needs its rule here; tests/test_schema.py's agreement table shows
#: where schema and validate disagree.
RULES: dict[str, list[Callable[[dict], None]]] = {
    "Spec": [_one_form, _plain_name],
    "VAESpec": [_plain_name],
    "HVAESpec": [_plain_name],
    "StemConfig": [_odd("kernel")],
    "HPosteriorConfig": [_odd("kernel")],
    "MaskedConvConditioner": [_odd("kernel")],
    "InputSpec": [_not_two_dimensional],
    "CouplingConfig": [_open_interval("clamp", 0, 50), _affine_options],
    "AffineTransform": [_open_interval("clamp", 0, 50)],
    "ConvConditioner": [_odd("kernel")],
    "LogitPreprocess": [_open_interval("alpha", 0, 0.5)],
    "ContextConfig": [_odd("kernel")],
    "TrainingConfig": [_steps_or_epochs],
}


def _require_tags(node, defs: dict) -> None:
    """In every union of models, a branch whose model has a tag (a property with a ``const``,
    like ``kind``) must write it: pydantic's discriminated unions do not fall back on the default.
    OpenAPI's ``discriminator`` keyword, which is no part of Draft 2020-12, is dropped."""
    if isinstance(node, list):
        for item in node:
            _require_tags(item, defs)
        return
    if not isinstance(node, dict):
        return
    node.pop("discriminator", None)
    branches = node.get("oneOf", [])
    if len(branches) > 1:
        for branch in branches:
            target = defs.get(branch.get("$ref", "").rsplit("/", 1)[-1], {})
            tags = [name for name, prop in target.get("properties", {}).items() if "const" in prop]
            if tags:
                branch["required"] = tags
    for key, value in node.items():
        if key != "required":
            _require_tags(value, defs)


def _bare(kinds: dict) -> list[str]:
    """The kinds a bare name may stand for: those whose fields all have defaults."""
    return sorted(kind for kind, config in kinds.items()
                  if not any(f.is_required() for f in config.model_fields.values()))


def _bare_names(node, unions: list[tuple[set, list[str]]]) -> None:
    """A union made by :func:`flowspec.layers.kinds.kind_union` (transforms, conditioners) also
    takes a bare kind name, ``transform: affine`` for ``{kind: affine}``."""
    if isinstance(node, list):
        for item in node:
            _bare_names(item, unions)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _bare_names(value, unions)
    refs = {branch.get("$ref", "").rsplit("/", 1)[-1] for branch in node.get("oneOf", [])}
    for names, bare in unions:
        if refs and refs == names and bare:
            node["anyOf"] = [{"type": "string", "enum": bare}, {"oneOf": node.pop("oneOf")}]
            break


def spec_json_schema() -> dict:
    """The JSON Schema of a spec: any of the spec families the loader knows (a flow, ``model: vae``,
    ``model: hvae``)."""
    import flowspec  # noqa: F401  (registers every spec family)
    from flowspec.layers.kinds import UNIONS, load_plugins
    from flowspec.spec.models import SPEC_MODELS

    load_plugins()
    models = tuple(dict.fromkeys(SPEC_MODELS.values()))
    schema = TypeAdapter(Union[models]).json_schema(schema_generator=_Draft202012)  # type: ignore[valid-type]
    defs = schema["$defs"]
    for name, rules in RULES.items():
        if name in defs:
            for rule in rules:
                rule(defs[name])
    _require_tags(schema, defs)
    _bare_names(schema, [({config.__name__ for config in kinds.values()}, _bare(kinds.members())) for kinds in UNIONS.values()])
    return {"$schema": DRAFT, "title": "flowspec spec",
            "description": "A flowspec spec: a normalizing flow (explicit layers or the compact "
                           "multiscale form), a VAE (model: vae) or a hierarchical VAE (model: hvae). `flowspec validate` also checks "
                           "shapes and the rules listed in docs/spec.md.",
            **{k: v for k, v in schema.items() if k not in ("$defs", "title")}, "$defs": defs}


def schema_text() -> str:
    """The schema as ``flowspec schema`` prints and ships it."""
    return json.dumps(spec_json_schema(), indent=2) + "\n"
