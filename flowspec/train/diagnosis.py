"""When the loss or the gradients become NaN/Inf: say where, and what to change.

The data are checked first (a non-finite value in a batch is the data set's fault, not a layer's);
then the forward pass is re-run with a hook on every submodule, and the first one (in the order
they run) whose output is non-finite is named, with the spec's layer name where the model has one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from flowspec.errors import FlowSpecError
from flowspec.train.config import TrainingConfig


class TrainingDiverged(FlowSpecError):
    """The loss or the gradients became NaN/Inf; the message names where and what to change."""


def _label(model: nn.Module, qualified: str, detail: str) -> str:
    """``layers.3.net.0`` -> ``layer 'level0.step0.coupling' (layers[3].net.0, detail)`` where the
    model names its layers (a compiled flow's ``names``), else ``module 'encoder.body.0' (detail)``."""
    parts = qualified.split(".")
    names = getattr(model, "names", None)  # a flow's spec-level layer names, aligned with model.layers
    if names is not None and len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
        rest = "".join(f".{p}" for p in parts[2:])
        return f"layer {names[int(parts[1])]!r} (layers[{parts[1]}]{rest}, {detail})"
    return f"module {qualified!r} ({detail})"


def find_nonfinite(model: nn.Module, x: Tensor, c: Tensor | None = None) -> str | None:
    """Re-run the forward pass on ``x`` with hooks and name the first submodule whose output or
    log-det is NaN/Inf (``None`` when every one is finite). Non-finite data are named first."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        return "the batch itself holds non-finite values (the data, not a layer)"
    found: list[str] = []

    def hook_for(qualified: str):
        def hook(module, inputs, output):
            if found:
                return
            tensors = output if isinstance(output, (tuple, list)) else (output,)
            for position, tensor in enumerate(tensors):
                if isinstance(tensor, Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    what = "log-det" if position == 1 and len(tensors) == 2 else "output"
                    found.append(f"{_label(model, qualified, type(module).__name__)} gives a non-finite {what}")
                    return
            for tensor in inputs:
                if isinstance(tensor, Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    found.append(f"the input of {_label(model, qualified, type(module).__name__)} is already non-finite")
                    return
        return hook

    handles = [module.register_forward_hook(hook_for(qualified))
               for qualified, module in model.named_modules() if qualified]
    try:
        with torch.no_grad():
            model.loss_per_dim(x, condition=c)
    except Exception as error:  # a layer may raise on non-finite input; report what we know
        found.append(f"the forward pass raised {type(error).__name__}: {error}")
    finally:
        for handle in handles:
            handle.remove()
    for name, parameter in model.named_parameters():
        if not found and not torch.isfinite(parameter).all():
            found.append(f"parameter {name!r} is non-finite")
    return found[0] if found else None


def first_nonfinite_gradient(model: nn.Module) -> str | None:
    """``layer 'name' (layers.3.weight)`` of the first parameter with a NaN/Inf gradient, or ``None``."""
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return _label(model, name.rsplit(".", 1)[0], f"parameter {name}")
    return None


def diverged_message(step: int, what: str, where: str, config: TrainingConfig, last: Path | None,
                     saved: int | None) -> str:
    kept = (f"kept the last good checkpoint {last} (step {saved})" if last is not None
            else "no checkpoint was written yet")
    return (f"training diverged at step {step + 1}: {what}; {where}; {kept}; "
            f"try a lower --lr (now {config.lr:g}), a longer warm-up (now {config.warmup}), gradient clipping "
            f"(--grad-clip, now {config.grad_clip}), or a bounded coupling scale (scale: sigmoid, or a clamp)")
