"""``training.compile: true`` (and ``--compile`` on train, bench and sample): ``torch.compile`` of
a built model's loss and sampling, in place, each as one graph (``fullgraph=True``).

Compiled are the two methods every family's runner goes through: ``loss_per_dim`` (the training
step's forward, whose backward AOTAutograd compiles too, and evaluation) and ``generate`` (the
deterministic half of sampling: noise in, sample or likelihood parameters out; the noise is drawn
outside the graph, so a seeded generator gives the same samples compiled or not). Train and eval
mode, and grad on or off, compile one graph each; training steps of one batch shape reuse theirs
(no recompilation across steps). The model must be initialized first (actnorm's data-dependent
init runs eagerly, before any compiled step).
"""

from __future__ import annotations

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
