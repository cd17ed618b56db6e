"""Run checkpoints: ``last.pt`` and ``best.pt`` in the run folder, written atomically (temporary
file + rename, :func:`flowspec.compile.export.atomic_save`), read with ``weights_only=True``.

A checkpoint is a model file (``format: flowspec-model/1``, so ``flowspec.load_model`` reads it and
prefers the EMA weights) with the training state added: optimizer, schedule position, EMA, RNG
states of torch / numpy / python (as tensors and plain lists), the data order position and the
training config.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from flowspec.compile.export import MODEL_FORMAT, atomic_save, read_checkpoint
from flowspec.errors import CheckpointError

RUN_KEYS = ("state_dict", "optimizer", "step", "spec", "rng", "config")


def rng_state() -> dict:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                       "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": {"version": int(version), "state": list(python_state), "gauss": gauss}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str | Path) -> None:
    atomic_save({"format": MODEL_FORMAT, **state}, path)


def load_checkpoint(path: str | Path) -> dict:
    """A run checkpoint, or a clear :class:`CheckpointError` when corrupt, foreign or a bare model."""
    data = read_checkpoint(path, MODEL_FORMAT)
    missing = [key for key in RUN_KEYS if key not in data]
    if missing:
        raise CheckpointError(f"{path}: a model file, not a training checkpoint (no {', '.join(missing)}); "
                              f"it cannot be resumed")
    return data
