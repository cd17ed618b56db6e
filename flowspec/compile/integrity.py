"""Integrity of saved model files and run checkpoints: a checksum of their contents, the types of
their metadata, and finite weights.

The checksum is SHA-256 over a canonical walk of the saved dictionary (every key but ``checksum``,
dictionary keys in sorted order): for each tensor its path, dtype, shape and raw bytes; for each
plain value its path, type and ``repr``. It is stored as ``checksum: {sha256: HEX}``; a byte flipped
anywhere in a tensor's storage, or a number changed in the metadata, changes it. Files written before
checksums existed (no ``checksum`` key) still load, with the type and finiteness checks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

from flowspec.errors import CheckpointError

CHECKSUM_KEY = "checksum"
_NONE = type(None)
#: the metadata a flowspec file may carry, and the types each may take (bool is never an int here)
METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "spec": (dict,), "spec_file": (str, _NONE), "state_dict": (dict,),
    "ema_state_dict": (dict, _NONE), "optimizer": (dict,), "scheduler": (dict,), "step": (int,),
    "epoch": (int,), "ema_updates": (int,), "best_bpd": (float, int), "bpd_avg": (float, int, _NONE),
    "config": (dict,), "data": (dict, _NONE), "data_order": (dict,), "rng": (dict,), CHECKSUM_KEY: (dict,)}
COUNTS = ("step", "epoch", "ema_updates")
WEIGHTS = ("state_dict", "ema_state_dict")


def _feed(digest, value, path: str) -> None:
    if isinstance(value, Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{path}\ttensor\t{flat.dtype}\t{tuple(value.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"{path}\tdict\t{len(value)}\n".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(digest, value[key], f"{path}/{key!r}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"{path}\tsequence\t{len(value)}\n".encode())
        for index, item in enumerate(value):
            _feed(digest, item, f"{path}[{index}]")
    else:
        digest.update(f"{path}\t{type(value).__name__}\t{value!r}\n".encode())


def checksum(contents: dict) -> str:
    """SHA-256 (hex) of ``contents`` without its ``checksum`` entry, in the canonical order."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in contents.items() if key != CHECKSUM_KEY}, "")
    return digest.hexdigest()


def sealed(contents: dict) -> dict:
    """``contents`` with its checksum added, ready to save."""
    return {**contents, CHECKSUM_KEY: {"sha256": checksum(contents)}}


def _kind(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def verify(contents: dict, path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line naming ``path``) unless the metadata have their
    types, every weight is finite and the checksum, where stored, matches."""
    for key, types in METADATA_TYPES.items():
        if key not in contents:
            continue
        value = contents[key]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join("null" if t is _NONE else t.__name__ for t in types)
            raise CheckpointError(f"{path}: field {key!r} must be {wanted}, got {_kind(value)}")
        if key in COUNTS and value < 0:
            raise CheckpointError(f"{path}: field {key!r} must be a non-negative integer, got {value}")
    for key in WEIGHTS:
        for name, tensor in (contents.get(key) or {}).items():
            if not isinstance(name, str) or not isinstance(tensor, Tensor):
                raise CheckpointError(f"{path}: {key} must map parameter names to tensors, got {_kind(name)}")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = tensor[~torch.isfinite(tensor)]
                raise CheckpointError(f"{path}: {key} parameter {name!r} holds {bad.numel()} non-finite "
                                      f"value(s) ({bad.reshape(-1)[0].item()}); the weights are damaged")
    if CHECKSUM_KEY not in contents:
        return
    stored = contents[CHECKSUM_KEY].get("sha256")
    if not isinstance(stored, str):
        raise CheckpointError(f"{path}: field 'checksum' must hold a sha256 string, got {_kind(stored)}")
    actual = checksum(contents)
    if actual != stored:
        raise CheckpointError(f"{path}: damaged: the sha256 of its contents is {actual[:12]}..., the file "
                              f"records {stored[:12]}...; it changed after it was written")
