"""Pretrained reference models shipped with flowspec: small digits models of the shipped digits
specs, trained by ``scripts/pretrain_digits.py`` and stored as safetensors (``NAME.safetensors``),
each with its record in ``models.json`` (command, commit, steps, test bits/dim).

``flowspec.load_model("pretrained:glow-digits")`` and every verb that takes a checkpoint
(``flowspec sample pretrained:glow-digits``) read them. This package holds files only and imports
nothing from flowspec.
"""

from __future__ import annotations

import json
from pathlib import Path

PRETRAINED_FOLDER = Path(__file__).resolve().parent
MODELS_FILE = PRETRAINED_FOLDER / "models.json"


def records() -> dict[str, dict]:
    """``models.json``: each shipped model's command, commit, steps and test bits/dim."""
    return json.loads(MODELS_FILE.read_text()) if MODELS_FILE.is_file() else {}


def shipped() -> list[str]:
    """The names of the shipped models (those with a record and a file)."""
    return sorted(name for name in records() if (PRETRAINED_FOLDER / f"{name}.safetensors").is_file())
