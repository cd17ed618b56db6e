"""docs/spec.md stays in step with the spec models.

Walks every pydantic model reachable from the spec roots (every ``model:`` the loader knows, every
registered layer kind) through ``model_fields`` annotations, so models added later (new layer kinds,
conditioners, dequantizers, sections) are checked without editing this test. For each model the
docs need a section whose heading names the class in backticks, and every field the class
declares must appear in backticks in that section (fields inherited from a base are looked up in
the base's section).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import flowspec
from flowspec.layers import LAYER_KINDS
from flowspec.layers.kinds import field_models
from flowspec.spec.loader import MODELS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "spec.md"
TEXT = DOCS.read_text(encoding="utf-8")


def spec_models() -> list[type[BaseModel]]:
    roots = list(MODELS.values()) + list(LAYER_KINDS.values())
    seen: dict[type, None] = {}
    stack = roots[::-1]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen[model] = None
        for field in model.model_fields.values():
            stack += field_models(field.annotation, field.metadata)[::-1]
    return list(seen)


def _owner(model: type[BaseModel], field: str) -> type[BaseModel]:
    """The class in the MRO that declares ``field`` first (a base like LayerConfig)."""
    owner = model
    for base in model.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, BaseModel) and field in getattr(base, "model_fields", {}):
            owner = base
    return owner


def sections() -> list[tuple[str, str]]:
    """(heading, body) pairs; a body runs to the next heading."""
    parts = re.split(r"^(#{1,6} .*)$", TEXT, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def section_of(model: type) -> str | None:
    for heading, body in sections():
        if f"`{model.__name__}`" in heading:
            return body
    return None


MODELS_WALKED = spec_models()


def test_the_walk_finds_the_core_models():
    names = {m.__name__ for m in MODELS_WALKED}
    assert {"Spec", "InputSpec", "RepeatBlock", "ConvConditioner", "MLPConditioner",
            "UniformDequantization"} <= names
    assert {config.__name__ for config in LAYER_KINDS.values()} <= names


def undocumented(model: type[BaseModel]) -> list[str]:
    """What docs/spec.md lacks for ``model``: its section, or fields missing from it."""
    if section_of(model) is None:
        return [f"a section for {model.__name__}: add a heading naming `{model.__name__}` with a "
                f"table of its fields (see 'Adding a section for a new model')"]
    missing = []
    for field in model.model_fields:
        owner = _owner(model, field)
        body = section_of(owner)
        if body is None or not re.search(rf"`{re.escape(field)}[`.:]", body):
            missing.append(f"field {field!r} (in the section of {owner.__name__})")
    return missing


@pytest.mark.parametrize("model", MODELS_WALKED, ids=lambda m: m.__name__)
def test_every_field_is_documented(model):
    missing = undocumented(model)
    assert not missing, f"docs/spec.md does not document {model.__name__}: {missing}"


def test_the_check_catches_what_is_missing():
    from flowspec.layers.base import LayerConfig
    from flowspec.layers.permute import PermuteConfig

    class PermuteConfigWithExtra(PermuteConfig):
        undocumented_option: int = 0

    class NotInTheDocs(BaseModel):
        anything: int = 0

    assert undocumented(PermuteConfigWithExtra)[0].startswith("a section")
    assert undocumented(NotInTheDocs)[0].startswith("a section")
    PermuteConfigWithExtra.__name__ = "PermuteConfig"  # now it has a section, but not the field
    assert undocumented(PermuteConfigWithExtra) == ["field 'undocumented_option' (in the section of PermuteConfig)"]
    assert _owner(PermuteConfig, "name") is LayerConfig


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_every_layer_kind_has_a_heading(kind):
    assert re.search(rf"^### `{re.escape(kind)}` \(`{LAYER_KINDS[kind].__name__}`\)", TEXT, flags=re.M), \
        f"docs/spec.md needs a section '### `{kind}` (`{LAYER_KINDS[kind].__name__}`)' under Layer kinds"


def test_the_compact_form_repeat_and_shorthand_are_documented():
    for needle in ("levels", "steps", "step", "repeat:", "- squeeze", "did you mean", "file:line:col"):
        assert needle in TEXT, needle


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", TEXT, flags=re.S)


@pytest.mark.parametrize("block", [b for b in _yaml_blocks() if re.search(r"^input:", b, flags=re.M)
                                   and re.search(r"^(layers|levels|model):", b, flags=re.M)],
                         ids=lambda b: b.splitlines()[0][:30])
def test_whole_spec_examples_are_valid(block):
    spec = flowspec.loads_spec(block, "docs/spec.md")
    if isinstance(spec, flowspec.Spec):
        flowspec.build_graph(spec)


def test_layer_row_examples_are_valid():
    """Every example that is a list of layer rows (or one row) is a valid row of some input."""
    checked = 0
    for block in _yaml_blocks():
        data = yaml.safe_load(block)
        rows = data if isinstance(data, list) else data.get("layers") if isinstance(data, dict) and set(data) == {"layers"} else None
        if rows is None:
            continue
        kinds = {r if isinstance(r, str) else r.get("kind") for r in rows}
        conditioner = next((r.get("conditioner", {}).get("kind") for r in rows
                            if isinstance(r, dict) and isinstance(r.get("conditioner"), dict)), "conv")
        vector = conditioner == "mlp" or "maf" in kinds or "scaling" in kinds and len(rows) > 1
        shape = [6] if vector else [4, 8, 8]
        flowspec.build_graph(flowspec.loads_spec(yaml.safe_dump({"input": {"shape": shape}, "layers": rows})))
        checked += 1
    assert checked >= 8
