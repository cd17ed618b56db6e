"""Invertible (memory-saving) backprop over a run of invertible layers (RevNet, Gomez et al. 2017,
arXiv:1707.04585; i-RevNet, Jacobsen et al. 2018, arXiv:1802.07088).

For a run ``y = f_n o ... o f_1 (x)`` with ``logdet = sum_i ld_i(x_{i-1})``, standard backprop keeps
every intermediate activation (``x_i`` and everything each ``f_i`` saves). Here the forward pass
keeps only the run's output ``y``; the backward pass walks the run in reverse and, for each layer,

    x_{i-1} = f_i^{-1}(x_i)                              (recompute the input by inverting)
    (x_{i-1} -> f_i(x_{i-1}), ld_i(x_{i-1}))             (re-run one layer with autograd on)
    dL/dx_{i-1}, dL/dtheta_i = vjp with (dL/dx_i, dL/dlogdet)

(a channel-mask coupling shares one conditioner pass between the two, since ``x_b = y_b``),
so at most one layer's activations live at a time: activation memory is flat in the number of
steps K, for about one extra forward and one inverse per layer. Gradients equal standard
backprop's up to the round-off of the inversions (float32: ~1e-6 relative per layer).

Actnorm's data-dependent init mutates parameters in the forward pass; a run that still has an
uninitialised actnorm is therefore executed with standard autograd (see :func:`run_layers`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from torch import Tensor, nn

from flowspec.layers.actnorm import ActNorm
from flowspec.layers.coupling import Coupling


class _InvertibleRun(torch.autograd.Function):
    """``(x, *params) -> (y, logdet)`` keeping only ``y`` for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, layers: Sequence[nn.Module], n_params: int, *params: Tensor):
        with torch.no_grad():
            logdet = x.new_zeros(x.shape[0])
            for layer in layers:
                x, step = layer(x)
                logdet = logdet + step
        ctx.layers = layers
        ctx.save_for_backward(x)
        return x, logdet

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_logdet: Tensor):
        (y,) = ctx.saved_tensors
        layers = ctx.layers
        params = [p for p in _parameters(layers)]
        grads: dict[int, Tensor] = {}
        if grad_y is None:
            grad_y = torch.zeros_like(y)
        if grad_logdet is None:
            grad_logdet = y.new_zeros(y.shape[0])
        for layer in reversed(layers):
            inputs, out, step, join = _recompute(layer, y)
            own = [p for p in layer.parameters() if p.requires_grad]
            pairs = [(t, g) for t, g in ((out, grad_y), (step, grad_logdet)) if t.requires_grad]
            found = torch.autograd.grad([t for t, _ in pairs], [*inputs, *own], [g for _, g in pairs],
                                        allow_unused=True)
            found_inputs = [torch.zeros_like(t) if g is None else g
                            for t, g in zip(inputs, found[:len(inputs)])]
            grad_y = join(*found_inputs)
            for p, g in zip(own, found[len(inputs):]):
                if g is not None:
                    grads[id(p)] = grads[id(p)] + g if id(p) in grads else g
            y = join(*(t.detach() for t in inputs))
        grad_params = [grads.get(id(p)) for p in params]
        return (grad_y if ctx.needs_input_grad[0] else None, None, None, *grad_params)


def _recompute(layer: nn.Module, y: Tensor):
    """Invert ``layer`` at ``y`` and re-run it with autograd on.

    Returns ``(inputs, out, logdet, join)``: ``inputs`` are leaf tensors (requiring grad) that
    ``join`` assembles into the layer's input ``x = f^{-1}(y)``, and ``(out, logdet) = f(x)``
    recorded by autograd. A channel-mask coupling shares one conditioner pass between the two
    directions (``x_b = y_b``, so ``NN(x_b)`` is the same network evaluation); every other
    layer inverts, then runs forward.
    """
    if isinstance(layer, Coupling) and not layer.checkerboard:
        y_a, y_b = layer._split(y)
        with torch.enable_grad():
            x_b = y_b.detach().requires_grad_(True)
            shift, log_s = layer._params(x_b)
        with torch.no_grad():
            x_a = y_a - shift if log_s is None else (y_a - shift) * torch.exp(-log_s)
        with torch.enable_grad():
            x_a = x_a.detach().requires_grad_(True)
            if log_s is None:
                out_a, logdet = x_a + shift, x_a.new_zeros(x_a.shape[0])
            else:
                out_a, logdet = x_a * torch.exp(log_s) + shift, layer._sum(log_s)
            out = layer._join(out_a, x_b)
        return (x_a, x_b), out, logdet, layer._join
    with torch.no_grad():
        x, _ = layer.inverse(y)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out, logdet = layer(x)
    return (x,), out, logdet, lambda t: t


def _parameters(layers) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    for p in (p for layer in layers for p in layer.parameters()):
        if p.requires_grad:
            seen.setdefault(id(p), p)
    return list(seen.values())


def invertible_run(layers: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(y, logdet)`` of the layers in order, with invertible backprop (activations recomputed)."""
    params = _parameters(layers)
    return _InvertibleRun.apply(x, layers, len(params), *params)


def needs_plain_run(layers: Sequence[nn.Module]) -> bool:
    """True while an actnorm of the run still waits for its data-dependent init in training."""
    return any(isinstance(m, ActNorm) and m.training and not bool(m.initialized)
               for layer in layers for m in layer.modules())


def run_layers(layers: Sequence[nn.Module], x: Tensor, invertible: bool) -> tuple[Tensor, Tensor]:
    """Run invertible layers data -> latent, with invertible backprop when ``invertible`` and
    a gradient is being recorded; otherwise plainly."""
    if invertible and torch.is_grad_enabled() and not needs_plain_run(layers):
        return invertible_run(layers, x)
    logdet = x.new_zeros(x.shape[0])
    for layer in layers:
        x, step = layer(x)
        logdet = logdet + step
    return x, logdet
