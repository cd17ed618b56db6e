"""Run checkpoints: ``last.pt`` and ``best.pt`` in the run folder, written atomically (temporary
file + rename, :func:`flowspec.compile.export.atomic_save`), read with ``weights_only=True`` and
checked (:func:`flowspec.compile.integrity.verify`): the SHA-256 of their contents, the types of
their metadata, finite weights.

A checkpoint is a model file (``format: flowspec-model/1``, so ``flowspec.load_model`` reads it and
prefers the EMA weights) with the training state added: optimizer, schedule position, EMA, RNG
states of torch / numpy / python (as tensors and plain lists), the data order position, the
smoothed loss ``bpd_avg`` and the training config.
"""

from __future__ import annotations

import errno
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowspec.compile.export import MODEL_FORMAT, atomic_save, read_checkpoint
from flowspec.compile.integrity import sealed
from flowspec.errors import CheckpointError

RUN_KEYS = ("state_dict", "optimizer", "step", "spec", "rng", "config")
#: what a write error means to a user, by errno
WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "the file system is read-only"}
#: headroom over the tensors' bytes: zip records, alignment and the pickled metadata
PER_TENSOR_OVERHEAD, FIXED_OVERHEAD = 256, 64 << 10


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


def bytes_needed(contents) -> int:
    """An upper estimate of the size of ``contents`` on disk: the bytes of its tensors' storages
    (each once) plus headroom for the zip records and the pickled metadata."""
    tensors: list[Tensor] = []

    def walk(value) -> None:
        if isinstance(value, Tensor):
            tensors.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(contents)
    storages = {}  # torch.save writes a storage shared by several tensors once
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(storage.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values()) + PER_TENSOR_OVERHEAD * len(tensors) + FIXED_OVERHEAD


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _write_refused(path: Path, reason: str, needed: int, free: int | None) -> CheckpointError:
    space = f"needs about {human_bytes(needed)}" + (f", {human_bytes(free)} free" if free is not None else "")
    kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written"
    return CheckpointError(f"cannot write {path.name} in {path.parent}: {reason} ({space}); {kept}")


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` (with its checksum) atomically to ``path``. A full disk, a quota or a
    permission error is one :class:`CheckpointError` naming the folder and the space needed; the
    previous file at ``path`` stays as it was."""
    path = Path(path)
    contents = sealed({"format": MODEL_FORMAT, **state})
    needed = bytes_needed(contents)
    free = _free_bytes(path.parent)
    if free is not None and free < needed:
        raise _write_refused(path, WRITE_ERRORS[errno.ENOSPC], needed, free)
    try:
        atomic_save(contents, path)
    except OSError as error:
        if error.errno not in WRITE_ERRORS:
            raise
        raise _write_refused(path, WRITE_ERRORS[error.errno], needed, _free_bytes(path.parent)) from None
    except RuntimeError:  # torch's zip writer reports a short write as "unexpected pos ..."
        free = _free_bytes(path.parent)
        if free is None or free >= needed:
            raise
        raise _write_refused(path, WRITE_ERRORS[errno.ENOSPC], needed, free) from None


def load_checkpoint(path: str | Path) -> dict:
    """A run checkpoint, or a clear :class:`CheckpointError` when corrupt, damaged, foreign or a
    bare model."""
    data = read_checkpoint(path, MODEL_FORMAT)
    missing = [key for key in RUN_KEYS if key not in data]
    if missing:
        raise CheckpointError(f"{path}: a model file, not a training checkpoint (no {', '.join(missing)}); "
                              f"it cannot be resumed")
    return data


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.last.pt.XXXX`` / ``.best.pt.XXXX`` temporaries that a process killed during a
    checkpoint write leaves behind. Call it only while holding the run folder's lock: then no other
    process is writing there."""
    removed = []
    for pattern in (".last.pt.*", ".best.pt.*"):
        for temporary in Path(folder).glob(pattern):
            try:
                if temporary.is_file():
                    temporary.unlink()
                    removed.append(temporary)
            except OSError:  # not ours to remove (permissions): leave it, it blocks nothing
                continue
    return removed
