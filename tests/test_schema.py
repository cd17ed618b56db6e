"""The JSON Schema (``flowspec schema``) against ``flowspec validate``, with the ``jsonschema``
library (Draft 2020-12): every shipped spec and every YAML example of the README and docs/ is valid
under it, and on a table of right and wrong specs the schema and validate agree on each. The
rules JSON Schema cannot express are listed in docs/spec.md; those cases are checked to be exactly
the ones where the two differ."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

import flowspec
from flowspec.cli import app
from flowspec.errors import SpecError
from flowspec.layers import LAYER_KINDS
from flowspec.spec.loader import MODELS
from flowspec.spec.schema import DRAFT, SHIPPED, schema_text, spec_json_schema
from flowspec.spec.yaml_source import load_yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = spec_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_accepts(data) -> bool:
    return VALIDATOR.is_valid(data)


def validate_accepts(text: str) -> bool:
    try:
        flowspec.build_graph(flowspec.loads_spec(text))
    except SpecError:
        return False
    return True


def test_the_schema_is_draft_2020_12_and_well_formed():
    assert SCHEMA["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert "discriminator" not in json.dumps(SCHEMA)  # OpenAPI's keyword is not Draft 2020-12


def test_every_kind_is_in_the_schema_as_a_row_and_a_bare_name():
    rows = json.dumps(SCHEMA["$defs"]["Spec"]["properties"]["layers"])
    for kind, config in LAYER_KINDS.items():
        assert f'"#/$defs/{config.__name__}"' in rows and f'"{kind}"' in rows


def test_the_shipped_schema_is_the_generated_one():
    assert SHIPPED.read_text() == schema_text(), "run: flowspec schema -o schema/flowspec.schema.json"
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0 and json.loads(result.stdout) == SCHEMA


SHIPPED_SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.name)
def test_shipped_specs_are_valid_and_name_the_schema(path):
    text = path.read_text()
    assert schema_accepts(load_yaml(text)[0])
    first = text.splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, f"{path.name}: first line should be '# yaml-language-server: $schema=...'"
    assert (path.parent / match.group(1)).resolve() == SHIPPED


def _examples() -> list[tuple[str, str]]:
    blocks = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S):
            blocks.append((doc.name, block))
    return blocks


BASES = [{"input": {"shape": [4, 8, 8]}, "layers": ["actnorm"]}, {"input": {"shape": [6]}, "layers": ["scaling"]}]


def _completions(data) -> list[dict] | None:
    """Whole specs a fragment of the docs may belong to (a list of rows, some sections, a row's
    fields); None for YAML that is no part of a spec (a device profile)."""
    if isinstance(data, list):
        return [{**base, "layers": data} for base in BASES]
    if not isinstance(data, dict):
        return None
    if any(set(data) <= set(model.model_fields) for model in MODELS.values()):
        if "input" in data and ({"layers", "levels", "model"} & set(data)):
            return [data]  # a whole spec
        compact = {"levels", "steps", "step"} & set(data)
        return [{k: v for k, v in base.items() if not (compact and k == "layers")} | data for base in BASES]
    rows = [{"kind": kind, **data} for kind, config in LAYER_KINDS.items() if set(data) <= set(config.model_fields)]
    return [{**base, "layers": [row]} for row in rows for base in BASES] or None


EXAMPLES = _examples()


@pytest.mark.parametrize("doc, block", EXAMPLES, ids=[f"{d}:{b.splitlines()[0][:40]}" for d, b in EXAMPLES])
def test_doc_examples_are_valid_under_the_schema(doc, block):
    data = load_yaml(block)[0]
    completions = _completions(data)
    if completions is None:
        assert "peak_flops" in block, f"{doc}: a YAML example that is no spec nor part of one"
        return
    assert any(schema_accepts(c) and validate_accepts(yaml.safe_dump(c)) for c in completions), block
    if "input" in data and ("layers" in data or "levels" in data or "model" in data):
        assert block.startswith("# yaml-language-server: $schema="), f"{doc}: whole spec without the schema line"


SMALL = """\
input: {shape: [4, 8, 8]}
levels: 1
steps: 2
step:
  - actnorm
  - {kind: invconv, lu: true}
  - {kind: coupling, conditioner: {kind: conv, hidden: 8}}
"""
ROWS = "input: {shape: [4, 8, 8]}\nlayers:\n%s"
VAE = "model: vae\ninput: {shape: [1, 8, 8], levels: 17}\nlatent: 4\n"

# (id, spec text, valid?) -- schema and validate must both give the verdict
AGREEMENT = [
    ("compact-form", SMALL, True),
    ("bare-string-rows", ROWS % "  - actnorm\n  - squeeze\n  - invconv\n", True),
    ("repeat-block", ROWS % "  - repeat: 3\n    layers: [actnorm, {kind: invconv}]\n", True),
    ("int-for-float", SMALL + "training: {lr: 1, grad_clip: 5}\n", True),
    ("null-layers-with-compact", SMALL + "layers: null\n", True),
    ("split-without-kind", SMALL + "split: {prior: standard}\n", True),
    ("epochs-instead-of-steps", SMALL + "training: {epochs: 2, steps: null}\n", True),
    ("clamp-inside", ROWS % "  - {kind: coupling, scale: exp, clamp: 49.5}\n", True),
    ("vae", VAE, True),
    ("variational-dequantizer", SMALL + "dequantization: {kind: variational, context: {kernel: 3}}\n"
                                        "preprocess: {kind: logit, alpha: 0.1}\n", True),
    ("row-without-kind", ROWS % "  - {lu: true}\n", False),
    ("clamp-100", ROWS % "  - {kind: coupling, clamp: 100}\n", False),
    ("clamp-0", ROWS % "  - {kind: coupling, clamp: 0}\n", False),
    ("2d-input", "input: {shape: [8, 8]}\nlayers: [actnorm]\n", False),
    ("empty-layers", "input: {shape: [4, 8, 8]}\nlayers: []\n", False),
    ("neither-form", "input: {shape: [4, 8, 8]}\n", False),
    ("both-forms", SMALL + "layers: [actnorm]\n", False),
    ("compact-without-step", "input: {shape: [4, 8, 8]}\nlevels: 1\nsteps: 2\n", False),
    ("steps-string", SMALL.replace("steps: 2", "steps: '8'"), False),
    ("steps-boolean", SMALL.replace("steps: 2", "steps: true"), False),
    ("hidden-boolean", SMALL.replace("hidden: 8", "hidden: true"), False),
    ("hidden-string", SMALL.replace("hidden: 8", 'hidden: "64"'), False),
    ("lu-string", SMALL.replace("lu: true", 'lu: "yes"'), False),
    ("repeat-string", ROWS % "  - repeat: '3'\n    layers: [actnorm]\n", False),
    ("shape-boolean", "input: {shape: [true, 8, 8]}\nlayers: [actnorm]\n", False),
    ("unknown-bare-kind", ROWS % "  - sqeeze\n", False),
    ("unknown-field", SMALL + "stepz: 3\n", False),
    ("conditioner-without-kind", ROWS % "  - {kind: coupling, conditioner: {hidden: 64}}\n", False),
    ("dequantizer-without-kind", SMALL + "dequantization: {centred: false}\n", False),
    ("steps-and-epochs", SMALL + "training: {steps: 10, epochs: 2}\n", False),
    ("even-context-kernel", SMALL + "dequantization: {kind: variational, context: {kernel: 2}}\n", False),
    ("alpha-half", SMALL + "preprocess: {kind: logit, alpha: 0.5}\n", False),
    ("parity-boolean", ROWS % "  - {kind: coupling, parity: true}\n", False),
    ("bf16-number", SMALL + "training: {bf16: 1}\n", False),
    ("unknown-model", "model: gan\n" + SMALL, False),
    ("vae-without-latent", VAE.replace("latent: 4\n", ""), False),
    ("repeat-with-kind", ROWS % "  - {repeat: 2, kind: actnorm, layers: [actnorm]}\n", False),
    ("empty-mlp-hidden", "input: {shape: [6]}\nlayers: [{kind: coupling, conditioner: {kind: mlp, hidden: []}}]\n", False),
    ("bare-transform-and-conditioner", ROWS % "  - {kind: coupling, transform: additive, conditioner: conv}\n", True),
    ("transform-mapping-clamp", ROWS % "  - {kind: coupling, transform: {kind: affine, scale: exp, clamp: 3}}\n", True),
    ("transform-clamp-100", ROWS % "  - {kind: coupling, transform: {kind: affine, clamp: 100}}\n", False),
    ("row-scale-with-affine", ROWS % "  - {kind: coupling, transform: affine, scale: exp}\n", True),
    ("row-scale-with-additive", ROWS % "  - {kind: coupling, transform: additive, scale: exp}\n", False),
    ("row-clamp-with-additive-mapping", ROWS % "  - {kind: coupling, transform: {kind: additive}, clamp: 3}\n", False),
    ("transform-without-kind", ROWS % "  - {kind: coupling, transform: {scale: exp}}\n", False),
    ("unknown-bare-transform", ROWS % "  - {kind: coupling, transform: afine}\n", False),
    ("plain-name", "name: glow_2.small-v1\n" + SMALL, True),
    ("name-with-dots", "name: a..b\n" + SMALL, False),
    ("name-with-slash", "name: runs/x\n" + SMALL, False),
    ("vae-name-with-dots", "name: v..1\n" + VAE, False),
    ("even-conv-kernel", ROWS % "  - {kind: coupling, conditioner: {kind: conv, kernel: 4}}\n", False),
]


@pytest.mark.parametrize("text, valid", [c[1:] for c in AGREEMENT], ids=[c[0] for c in AGREEMENT])
def test_schema_and_validate_agree(text, valid):
    data = load_yaml(text)[0]
    assert (schema_accepts(data), validate_accepts(text)) == (valid, valid)


# what only `flowspec validate` checks (listed in docs/spec.md): the schema accepts, validate rejects
VALIDATE_ONLY = [
    ("float-count", SMALL.replace("steps: 2", "steps: 2.0")),
    ("squeeze-odd-size", "input: {shape: [1, 7, 7]}\nlayers: [squeeze]\n"),
    ("too-many-levels", SMALL.replace("levels: 1", "levels: 5")),
    ("checkerboard-on-vectors", "input: {shape: [6]}\nlayers: [{kind: coupling, mask: checkerboard, "
                                "conditioner: {kind: mlp}}]\n"),
    ("conv-conditioner-on-vectors", "input: {shape: [6]}\nlayers: [{kind: coupling}]\n"),
    ("mlp-conditioner-on-images", ROWS % "  - {kind: coupling, conditioner: {kind: mlp}}\n"),
    ("channel-mask-on-one-channel", "input: {shape: [1, 8, 8]}\nlayers: [coupling]\n"),
]


@pytest.mark.parametrize("text", [c[1] for c in VALIDATE_ONLY], ids=[c[0] for c in VALIDATE_ONLY])
def test_rules_only_validate_checks(text):
    assert schema_accepts(load_yaml(text)[0]) and not validate_accepts(text)


def test_docs_list_the_rules_only_validate_checks():
    spec_md = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    section = spec_md.split("### What only `flowspec validate` checks", 1)
    assert len(section) == 2, "docs/spec.md needs the section '### What only `flowspec validate` checks'"
    for needle in ("8.0", "shape", "duplicate", "checkerboard", "conditioner", "levels"):
        assert needle in section[1].split("\n## ", 1)[0].lower(), needle
