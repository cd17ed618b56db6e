"""Where a run trains: the ``device`` field of ``training:`` (``cpu``, ``cuda`` or ``auto``)."""

from __future__ import annotations

import torch

from flowspec.errors import FlowSpecError


def pick_device(name: str) -> torch.device:
    """``auto`` is the GPU when torch sees one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FlowSpecError("device cuda asked for, but torch sees no GPU (use --device cpu or auto)")
    return torch.device(name)
