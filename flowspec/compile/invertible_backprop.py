"""Invertible (memory-saving) backprop over a run of invertible layers (RevNet, Gomez et al. 2017,
arXiv:1707.04585; i-RevNet, Jacobsen et al. 2018, arXiv:1802.07088).

For a run ``y = f_n o ... o f_1 (x)`` with ``logdet = sum_i ld_i(x_{i-1})``, standard backprop keeps
every intermediate activation (``x_i`` and everything each ``f_i`` saves). Here the forward pass
keeps only the run's output ``y``; the backward pass walks the run in reverse and asks each layer
to recompute its input (:meth:`~flowspec.layers.base.FlowLayer.recompute`: by default invert, then
re-run with autograd on; a kind may share work, as a channel-mask coupling shares its conditioner
pass), then takes the vector-Jacobian product with ``(dL/dx_i, dL/dlogdet)``:

    x_{i-1} = f_i^{-1}(x_i);   dL/dx_{i-1}, dL/dtheta_i, dL/dcontext += vjp

so at most one layer's activations live at a time: activation memory is flat in the number of
steps K, for about one extra forward and one inverse per layer. Gradients equal standard
backprop's up to the round-off of the inversions (float32: ~1e-6 relative per layer). A context
(the condition every layer sees) gets the sum of its gradients over the run.

Actnorm's data-dependent init mutates parameters in the forward pass; a run that still has an
uninitialised actnorm is therefore executed with standard autograd (see :func:`run_layers`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class _InvertibleRun(torch.autograd.Function):
    """``(x, context, *params) -> (y, logdet)`` keeping only ``y`` (and the context) for backward."""

    @staticmethod
    def forward(ctx, x: Tensor, context: Tensor | None, layers: Sequence[nn.Module], *params: Tensor):
        with torch.no_grad():
            logdet = x.new_zeros(x.shape[0])
            for layer in layers:
                x, step = layer(x, context)
                logdet = logdet + step
        ctx.layers = layers
        ctx.has_context = context is not None
        ctx.save_for_backward(x, *(() if context is None else (context,)))
        return x, logdet

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_logdet: Tensor):
        y, *saved_context = ctx.saved_tensors
        layers = ctx.layers
        params = _parameters(layers)
        grads: dict[int, Tensor] = {}
        context = saved_context[0].detach().requires_grad_(ctx.needs_input_grad[1]) if saved_context else None
        grad_context = None
        if grad_y is None:
            grad_y = torch.zeros_like(y)
        if grad_logdet is None:
            grad_logdet = y.new_zeros(y.shape[0])
        for layer in reversed(layers):
            inputs, out, step, join = layer.recompute(y, context)
            own = [p for p in layer.parameters() if p.requires_grad]
            sources = [*inputs, *own] + ([context] if context is not None and context.requires_grad else [])
            pairs = [(t, g) for t, g in ((out, grad_y), (step, grad_logdet)) if t.requires_grad]
            found = torch.autograd.grad([t for t, _ in pairs], sources, [g for _, g in pairs], allow_unused=True)
            found_inputs = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, found[:len(inputs)])]
            grad_y = join(*found_inputs)
            for p, g in zip(own, found[len(inputs):len(inputs) + len(own)]):
                if g is not None:
                    grads[id(p)] = grads[id(p)] + g if id(p) in grads else g
            if len(sources) > len(inputs) + len(own) and found[-1] is not None:
                grad_context = found[-1] if grad_context is None else grad_context + found[-1]
            y = join(*(t.detach() for t in inputs))
        grad_params = [grads.get(id(p)) for p in params]
        return (grad_y if ctx.needs_input_grad[0] else None, grad_context, None, *grad_params)


def _parameters(layers) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    for p in (p for layer in layers for p in layer.parameters()):
        if p.requires_grad:
            seen.setdefault(id(p), p)
    return list(seen.values())


def invertible_run(layers: Sequence[nn.Module], x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(y, logdet)`` of the layers in order, with invertible backprop (activations recomputed)."""
    return _InvertibleRun.apply(x, context, layers, *_parameters(layers))


def needs_plain_run(layers: Sequence[nn.Module]) -> bool:
    """True while a layer of the run still waits for a data-dependent init in training."""
    return any(m.training and getattr(m, "pending", False) for layer in layers for m in layer.modules())


def run_layers(layers: Sequence[nn.Module], x: Tensor, invertible: bool,
               context: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Run invertible layers data -> latent, with invertible backprop when ``invertible`` and
    a gradient is being recorded; otherwise plainly."""
    if invertible and torch.is_grad_enabled() and not needs_plain_run(layers):
        return invertible_run(layers, x, context)
    logdet = x.new_zeros(x.shape[0])
    for layer in layers:
        x, step = layer(x, context)
        logdet = logdet + step
    return x, logdet
