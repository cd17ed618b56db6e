"""The same Glow shape in other libraries, when they are installed: normflows and FrEIA.

Each builder returns ``(module, loss_fn, sample_fn)`` or raises :class:`ImportError`.
``loss_fn(x)`` is the mean negative log-likelihood of a batch (what a training step
differentiates), ``sample_fn(n)`` draws ``n`` images. Differences from flowspec's Glow, by design
of those libraries:

* normflows (``GlowBlock``: affine coupling with a sigmoid scale, LU 1x1 conv, actnorm, the same
  3x3 -> 1x1 -> 3x3 conditioner): its split priors are learned per-channel Gaussians
  (``GlowBase``), not conditioned on the kept half.
* FrEIA (``AllInOneBlock``: affine coupling with an ``atan`` soft clamp, a learned global affine
  map in place of actnorm, and a fixed random orthogonal ("soft") permutation in place of the
  learned 1x1 conv): standard normal priors on every latent, no learned prior.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

Baseline = tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[int], Tensor]]


def normflows_glow(shape: tuple[int, int, int], levels: int, steps: int, hidden: int) -> Baseline:
    import normflows as nf

    channels, height, width = shape
    q0, merges, flows = [], [], []
    for i in range(levels):
        level_flows = [nf.flows.GlowBlock(channels * 2 ** (levels + 1 - i), hidden, split_mode="channel",
                                          scale=True, scale_map="sigmoid", use_lu=True)
                       for _ in range(steps)]
        flows.append(level_flows + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (channels * 2 ** (levels - i), height // 2 ** (levels - i), width // 2 ** (levels - i))
        else:
            latent = (channels * 2 ** (levels + 1), height // 2 ** levels, width // 2 ** levels)
        q0.append(nf.distributions.GlowBase(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    return model, lambda x: model.forward_kld(x), lambda n: model.sample(n)[0]


def freia_glow(shape: tuple[int, int, int], levels: int, steps: int, hidden: int) -> Baseline:
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    def conditioner(c_in: int, c_out: int) -> nn.Module:
        last = nn.Conv2d(hidden, c_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)

    nodes: list = [Ff.InputNode(*shape, name="input")]
    outputs = []
    c = shape[0]
    for level in range(levels):
        nodes.append(Ff.Node(nodes[-1], Fm.IRevNetDownsampling, {}))
        c *= 4
        for _ in range(steps):
            nodes.append(Ff.Node(nodes[-1], Fm.AllInOneBlock,
                                 {"subnet_constructor": conditioner, "affine_clamping": 2.0,
                                  "permute_soft": True}))
        if level < levels - 1:
            kept = c - c // 2
            nodes.append(Ff.Node(nodes[-1], Fm.Split, {"n_sections": 2, "dim": 0}))
            outputs.append(Ff.OutputNode((nodes[-1], 1)))
            c = kept
    outputs.append(Ff.OutputNode(nodes[-1]))
    model = Ff.GraphINN(nodes + outputs)
    latent_shapes = [tuple(node.input_dims[0]) for node in outputs]

    def loss(x: Tensor) -> Tensor:
        zs, log_jac = model(x)
        zs = zs if isinstance(zs, (tuple, list)) else (zs,)
        return (sum(0.5 * z.flatten(1).square().sum(1) for z in zs) - log_jac).mean()

    def sample(n: int) -> Tensor:
        zs = [torch.randn(n, *s) for s in latent_shapes]
        return model(zs, rev=True)[0]

    return model, loss, sample


BASELINES: dict[str, Callable[..., Baseline]] = {"normflows": normflows_glow, "FrEIA": freia_glow}
