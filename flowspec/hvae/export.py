r"""``torch.export`` of a hierarchical VAE's sampling direction: the top-down prior and the decoder.

The program maps ``(temperature, eps_1, .., eps_L)`` (``eps_l`` of shape ``(batch, *latent_shape_l)``,
bottom first) to ``x``::

    z_l = pz_mean_l + T exp(pz_logsd_l) eps_l   (top-down),   x = mode p(x | z)

which is :meth:`~flowspec.hvae.model.HVAEModel.sample` (``mean=True``) with its noise given.
``torch.export.load`` runs it without flowspec installed, at any batch size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from flowspec.files import save_program
from flowspec.hvae.model import HVAEModel
from flowspec.vae import likelihoods


class PriorSampler(nn.Module):
    """``(temperature, *eps) -> x``: the top-down path of a :class:`HVAEModel` on given noise."""

    def __init__(self, model: HVAEModel):
        super().__init__()
        self.model = model

    def forward(self, temperature: Tensor, *eps: Tensor) -> Tensor:
        params = self.model.top_down(eps[0].shape[0], lambda index, block, p: p[0] + temperature * torch.exp(p[1]) * eps[index])
        return likelihoods.mode(self.model.likelihood, params, self.model.levels)


def export_sampler(model: HVAEModel, folder: str | Path, batch: int = 4, check: bool = True) -> dict[str, Path]:
    """Write ``sample.pt2`` (:class:`PriorSampler`) under ``folder``; with ``check``, the loaded
    program must equal the in-memory model on fresh noise. Returns ``{"sample": path}``."""
    path = Path(folder) / "sample.pt2"
    model = model.eval()
    reference = model.top
    eps = tuple(torch.randn(batch, *shape, dtype=reference.dtype) for shape in model.latent_shapes)
    temperature = torch.tensor(0.7, dtype=reference.dtype)
    batch_dim = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic = {"temperature": None, "eps": tuple({0: batch_dim} for _ in eps)}
    with torch.no_grad():
        program = torch.export.export(PriorSampler(model), (temperature, *eps), dynamic_shapes=dynamic)
        save_program(program, path)
        if check:
            exported = torch.export.load(path).module()(temperature, *eps)
            eager = PriorSampler(model)(temperature, *eps)
            if not torch.equal(exported, eager):
                raise RuntimeError(f"the exported sampling program differs from the model in "
                                   f"{(exported != eager).sum().item()} of {eager.numel()} levels")
    return {"sample": path}
