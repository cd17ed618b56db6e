"""Saving, loading and ``torch.export`` of compiled models.

``save_model`` writes the spec and the state dict in one file; ``load_model`` rebuilds the model
with one call (``weights_only`` loading). ``export_programs`` writes the density direction
(``x -> (*zs, logdet)``) and the sampling direction (``(*eps, temperature) -> x``) as ``.pt2``
files that ``torch.export.load`` runs without flowspec installed, at any batch size. A conditional
model's programs take the condition as an input after ``x`` / ``temperature``: ``(x, c)`` and
``(temperature, c, *eps)``, ``c`` int64 labels ``(batch,)`` or contexts ``(batch, dim)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from flowspec.errors import CheckpointError, SpecError
from flowspec.files import make_folder, replace_atomically, save_program
from flowspec.compile.integrity import sealed, verify
from flowspec.compile.model import FlowModel

MODEL_FORMAT = "flowspec-model/1"


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with replace_atomically(path) as stream:
        torch.save(obj, stream)


def save_model(model: FlowModel, path: str | Path) -> None:
    atomic_save(sealed({"format": MODEL_FORMAT, "spec": model.spec.model_dump(mode="json"),
                        "spec_file": getattr(model.spec.source, "file", None),
                        "state_dict": model.state_dict()}), path)


def read_checkpoint(path: str | Path, expected: str) -> dict:
    """Load a flowspec file with ``weights_only=True``; a clear error when missing, corrupt,
    foreign, damaged (checksum, metadata types, non-finite weights: :func:`integrity.verify`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable flowspec file: torch.load (weights_only) "
                              f"failed with {type(error).__name__}; is it a model.pt or a run's "
                              f"last.pt?") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith(expected.split("/")[0]):
        raise CheckpointError(f"{path}: not a {expected.split('/')[0]} file")
    verify(data, path)
    return data


def model_from_spec_data(data: dict, spec_file: str | None = None):
    from flowspec.compile import compile
    from flowspec.spec.loader import spec_from_data
    from flowspec.spec.yaml_source import SourceMap

    return compile(spec_from_data(data, SourceMap(spec_file or "<checkpoint>"), stored=True))


def load_model(path: str | Path) -> FlowModel:
    """Rebuild a model saved by :func:`save_model` (or a runner checkpoint) with its weights."""
    data = read_checkpoint(path, MODEL_FORMAT)
    try:
        model = model_from_spec_data(data["spec"], data.get("spec_file"))
        model.load_state_dict(data.get("ema_state_dict") or data["state_dict"])
    except (KeyError, RuntimeError, SpecError) as error:
        raise CheckpointError(f"{path}: its spec and weights do not fit: {error}") from None
    return model.eval()


class _Density(nn.Module):
    def __init__(self, model: FlowModel):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        zs, logdet, log_pz = self.model._encode(x)
        return (*zs, logdet, log_pz + logdet)


class _Sampler(nn.Module):
    def __init__(self, model: FlowModel):
        super().__init__()
        self.model = model

    def forward(self, temperature: Tensor, *eps: Tensor):
        return self.model.generate(list(eps), temperature)


class _ConditionalDensity(_Density):
    def forward(self, x: Tensor, c: Tensor):
        zs, logdet, log_pz = self.model._encode(x, c)
        return (*zs, logdet, log_pz + logdet)


class _ConditionalSampler(_Sampler):
    def forward(self, temperature: Tensor, c: Tensor, *eps: Tensor):
        return self.model.generate(list(eps), temperature, c)


def export_programs(model: FlowModel, folder: str | Path, batch: int = 4, check: bool = True) -> dict[str, Path]:
    """Export the density (``x -> (*zs, logdet, log_prob)``) and sampling
    (``(temperature, *eps) -> x``) directions with ``torch.export``; check each loaded program
    against the in-memory model. Returns the written paths."""
    folder = Path(folder)
    make_folder(folder)
    model = model.eval()
    reference = next(model.parameters(), torch.zeros(()))
    x = torch.randn(batch, *model.input_shape, dtype=reference.dtype)
    eps = tuple(torch.randn(batch, *shape, dtype=reference.dtype) for shape in model.latent_shapes)
    temperature = torch.tensor(0.7, dtype=reference.dtype)
    paths = {"density": folder / "density.pt2", "sample": folder / "sample.pt2"}
    batch_dim = torch.export.Dim("batch", min=1, max=1 << 20)  # any batch size, not only `batch`
    if getattr(model, "condition_config", None) is not None:
        return _export_conditional(model, folder, x, eps, temperature, paths, batch_dim, check)
    with torch.no_grad():
        density = torch.export.export(_Density(model), (x,), dynamic_shapes={"x": {0: batch_dim}})
        sampler = torch.export.export(_Sampler(model), (temperature, *eps), dynamic_shapes={
            "temperature": None, "eps": tuple({0: batch_dim} for _ in eps)})
        save_program(density, paths["density"])
        save_program(sampler, paths["sample"])
        if check:
            _check_equal(torch.export.load(paths["density"]).module()(x), _Density(model)(x), "density")
            _check_equal(torch.export.load(paths["sample"]).module()(temperature, *eps),
                         _Sampler(model)(temperature, *eps), "sampling")
    return paths


def _export_conditional(model, folder, x, eps, temperature, paths, batch_dim, check) -> dict[str, Path]:
    """The programs of a conditional model: ``(x, c)`` and ``(temperature, c, *eps)``."""
    from flowspec.compile.condition import random_condition

    c = random_condition(model.condition_config, x.shape[0], torch.Generator().manual_seed(0))
    c = c if c.dtype == torch.long else c.to(x.dtype)
    condition_dims = {0: batch_dim}
    with torch.no_grad():
        density = torch.export.export(_ConditionalDensity(model), (x, c),
                                      dynamic_shapes={"x": {0: batch_dim}, "c": condition_dims})
        sampler = torch.export.export(_ConditionalSampler(model), (temperature, c, *eps), dynamic_shapes={
            "temperature": None, "c": condition_dims, "eps": tuple({0: batch_dim} for _ in eps)})
        save_program(density, paths["density"])
        save_program(sampler, paths["sample"])
        if check:
            _check_equal(torch.export.load(paths["density"]).module()(x, c), _ConditionalDensity(model)(x, c), "density")
            _check_equal(torch.export.load(paths["sample"]).module()(temperature, c, *eps),
                         _ConditionalSampler(model)(temperature, c, *eps), "sampling")
    return paths


def _check_equal(exported, eager, what: str) -> None:
    exported = exported if isinstance(exported, (tuple, list)) else (exported,)
    eager = eager if isinstance(eager, (tuple, list)) else (eager,)
    for a, b in zip(exported, eager):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"the exported {what} program differs from the model by "
                               f"{(a - b).abs().max().item():.3g}")
