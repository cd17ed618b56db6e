r"""``torch.export`` of a VAE's sampling direction: the decoder path.

The program maps ``(temperature, eps) -> x`` with ``eps`` of shape ``(batch, latent)``::

    z = T * eps,   x = mode p(x|z) = the most likely level of decoder(z) per element

which is :meth:`~flowspec.vae.model.VAEModel.sample` (``mean=True``) with its noise given instead
of drawn. ``torch.export.load`` runs it without flowspec installed, at any batch size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from flowspec.files import save_program
from flowspec.vae import likelihoods
from flowspec.vae.model import VAEModel


class DecoderSampler(nn.Module):
    """``(temperature, eps) -> x``: the decoder path of a :class:`VAEModel` on given noise."""

    def __init__(self, model: VAEModel):
        super().__init__()
        self.model = model

    def forward(self, temperature: Tensor, eps: Tensor) -> Tensor:
        params = self.model.decoder(temperature * eps)
        return likelihoods.mode(self.model.likelihood, params, self.model.levels)


def export_sampler(model: VAEModel, folder: str | Path, batch: int = 4, check: bool = True) -> dict[str, Path]:
    """Write ``sample.pt2`` (:class:`DecoderSampler`) under ``folder``; with ``check``, the loaded
    program must equal the in-memory model on fresh noise. Returns ``{"sample": path}``."""
    path = Path(folder) / "sample.pt2"
    model = model.eval()
    reference = next(model.parameters())
    eps = torch.randn(batch, model.latent, dtype=reference.dtype)
    temperature = torch.tensor(0.7, dtype=reference.dtype)
    batch_dim = torch.export.Dim("batch", min=1, max=1 << 20)  # any batch size, not only `batch`
    with torch.no_grad():
        program = torch.export.export(DecoderSampler(model), (temperature, eps),
                                      dynamic_shapes={"temperature": None, "eps": {0: batch_dim}})
        save_program(program, path)
        if check:
            exported = torch.export.load(path).module()(temperature, eps)
            eager = DecoderSampler(model)(temperature, eps)
            if not torch.equal(exported, eager):  # levels: any difference is a whole level
                raise RuntimeError(f"the exported sampling program differs from the model in "
                                   f"{(exported != eager).sum().item()} of {eager.numel()} levels")
    return {"sample": path}
