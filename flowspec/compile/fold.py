"""Inference folding: actnorm followed by an invertible 1x1 conv becomes one affine 1x1 conv.

Actnorm ``a(x) = s * (x + b)`` (``s = exp(log_s)``) followed by ``y = W a(x)`` (Glow, Kingma &
Dhariwal 2018, arXiv:1807.03039) is the affine map

forward:  ``y = W' x + b'``  with  ``W' = W diag(s)``,  ``b' = W diag(s) b``
inverse:  ``x = W'^{-1} (y - b')``  with  ``W'^{-1} = diag(1/s) W^{-1}``
log-det:  ``H * W * (sum(log_s) + log|det W|)``, a constant

so sampling and density evaluation run one 1x1 conv (plus a bias) per step instead of an
elementwise pass and a conv, and ``W``, ``W^{-1}`` and the log-det are computed once, in float64,
when folding. The folded model is for evaluation and sampling only: its folded steps hold buffers,
not parameters.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from flowspec.compile.model import FlowModel
from flowspec.graph.nodes import invertible_runs
from flowspec.layers.actnorm import ActNorm
from flowspec.layers.base import FlowLayer, per_example
from flowspec.layers.invconv import InvConv, multiply_channels


class FoldedConv(FlowLayer):
    """``y = W' x + b'`` per pixel, with ``W'``, ``W'^{-1}``, ``b'`` and the log-det fixed."""

    def __init__(self, actnorm: ActNorm, invconv: InvConv):
        super().__init__()
        dtype = invconv.matrix().dtype
        with torch.no_grad():
            weight = invconv.matrix().double()
            log_s = actnorm.log_scale.double().flatten()
            bias = actnorm.bias.double().flatten()
            scale = torch.exp(log_s)
            folded = weight * scale  # W diag(s): scales column j by s_j
            inverse = torch.linalg.inv(weight) / scale.unsqueeze(1)  # diag(1/s) W^{-1}
            logdet = invconv.spatial * (log_s.sum() + torch.linalg.slogdet(weight)[1])
        self.register_buffer("weight", folded.to(dtype))
        self.register_buffer("inverse_weight", inverse.to(dtype))
        self.register_buffer("bias", (folded @ bias).to(dtype))
        self.register_buffer("log_abs_det", logdet.to(dtype))

    def _affine(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``W x (+ b)`` per pixel, one ``bmm`` / ``baddbmm`` as :class:`InvConv` multiplies (oneDNN's
        1x1 conv kernels are 2-3x slower at these channel counts)."""
        return multiply_channels(x, weight, bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._affine(x, self.weight, self.bias), per_example(self.log_abs_det, x)

    def inverse(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift = self.bias.view(1, -1, *([1] * (y.dim() - 2)))
        return self._affine(y - shift, self.inverse_weight, None), per_example(-self.log_abs_det, y)


def fold_for_inference(model: FlowModel) -> FlowModel:
    """A copy of ``model`` in eval mode in which every actnorm directly followed by an invconv is
    folded into one :class:`FoldedConv` (named ``"<actnorm>+<invconv>"``). ``model`` is unchanged."""
    folded = copy.deepcopy(model).eval()
    layers, names = [], []
    index = 0
    while index < len(folded.layers):
        layer, name = folded.layers[index], folded.names[index]
        following = folded.layers[index + 1] if index + 1 < len(folded.layers) else None
        if isinstance(layer, ActNorm) and isinstance(following, InvConv):
            layers.append(FoldedConv(layer, following))
            names.append(f"{name}+{folded.names[index + 1]}")
            index += 2
        else:
            layers.append(layer)
            names.append(name)
            index += 1
    folded.layers = torch.nn.ModuleList(layers)
    folded.names = names
    folded.runs = invertible_runs([layer.factors_out for layer in layers])
    return folded.eval()


@torch.no_grad()
def folding_error(model: FlowModel, folded: FlowModel, batch: int = 8, seed: int = 0) -> dict[str, float]:
    """Largest relative differences between ``model`` and ``folded`` (both in eval mode) on the
    log-prob of the model's own samples and on samples from the same noise."""
    generator = torch.Generator().manual_seed(seed)
    reference = model.top_prior.mean
    eps = [torch.randn((batch, *shape), generator=generator, dtype=reference.dtype).to(reference.device)
           for shape in model.latent_shapes]
    was_training = model.training
    model.eval()
    try:
        x, x_folded = model.generate(eps), folded.generate(eps)
        log_p, log_p_folded = model.log_prob(x), folded.log_prob(x)
    finally:
        model.train(was_training)

    def relative(a: Tensor, b: Tensor) -> float:
        return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()

    return {"samples": relative(x, x_folded), "log_prob": relative(log_p, log_p_folded)}
