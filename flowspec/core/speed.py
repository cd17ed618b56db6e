"""``training.compile: true`` (and ``--compile`` on train, bench and sample): ``torch.compile`` of
a built model's loss and sampling, in place, each as one graph (``fullgraph=True``).

Compiled are the two methods every family's runner goes through: ``loss_per_dim`` (the training
step's forward, whose backward AOTAutograd compiles too, and evaluation) and ``generate`` (the
deterministic half of sampling: noise in, sample or likelihood parameters out; the noise is drawn
outside the graph, so a seeded generator gives the same samples compiled or not). Train and eval
mode, and grad on or off, compile one graph each; training steps of one batch shape reuse theirs
(no recompilation across steps). The model must be initialized first (actnorm's data-dependent
init runs eagerly, before any compiled step).

:func:`keep_freed_memory` keeps glibc's malloc from handing freed activations back to the kernel
(the command-line verbs that run a model call it).
"""

from __future__ import annotations

import ctypes
import sys

import torch
from torch import nn

from flowspec.errors import FlowSpecError

#: the methods compiled, on the instance: every family's model has them (flowspec.core.protocol)
COMPILED = ("loss_per_dim", "generate")


def compile_model(model: nn.Module, **options) -> nn.Module:
    """``model`` with :data:`COMPILED` replaced on the instance by their ``torch.compile``
    (``fullgraph=True`` unless ``options`` say otherwise); its weights, ``state_dict`` and class are
    untouched. Returns ``model``."""
    if not getattr(model, "initialized", True):
        raise FlowSpecError("compile: the model is not initialized yet (run model.initialize(batch) first: "
                            "actnorm's data-dependent init does not run inside a compiled graph)")
    options = {"fullgraph": True, **options}
    for name in COMPILED:
        method = getattr(model, name)
        setattr(model, name, torch.compile(getattr(method, "_eager", method), **options))
        getattr(model, name)._eager = getattr(method, "_eager", method)
    return model


def is_compiled(model: nn.Module) -> bool:
    return all(hasattr(getattr(model, name, None), "_eager") for name in COMPILED)


#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's largest allowed mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)
_MMAP_THRESHOLD_MAX = 32 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep the memory this process frees, for the next allocation, instead of
    giving it back to the kernel. By default a freed block of a few MiB (an activation) goes back
    (``munmap``, or a trim of the heap's top), and the next tensor of that size page-faults on each
    of its pages: about 8,000 minor faults per glow-bench training step, none after this call, and
    1.05-1.15x the step's CPU time (batch 16, one thread). Blocks up to 32 MiB (glibc's largest
    mmap threshold) then come from the heap, and the heap is not trimmed, so resident memory stays
    at its peak, as with a caching allocator. Process-wide, so only the command-line verbs that run
    a model call it (``train``, ``eval``, ``sample``, ``bench``), never ``import flowspec``.
    Returns whether it applied (Linux with glibc; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc malloc to tune
        return False
    return all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
