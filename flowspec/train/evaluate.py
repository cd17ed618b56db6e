"""Test bits/dim of a model, and of a trained checkpoint (its EMA weights, as
:func:`flowspec.load_model` reads them); samples of a checkpoint.

Test bits/dim is the mean over the test split of ``-(log p(y) - log q(u|x) - D log n) / (D log 2)``
with one dequantization (or posterior) sample per example; with ``k > 1`` it is the
importance-weighted bound ``-log (1/k sum_i p(x, u_i) / q(u_i|x)) / (D log 2)`` (Burda et al. 2016,
arXiv:1509.00519), which tightens with ``k``. Every model family takes ``loss_per_dim(x, condition=, k=)``
(:class:`~flowspec.core.protocol.DensityModel`).
Continuous data (``input.data: continuous``) is scored exactly: ``nats/dim = -log p(x) / D`` and the
test log-likelihood ``log p(x)`` in nats per example. A conditional model is scored on the test
examples' own labels or contexts, ``log p(x | c)``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from flowspec.compile.export import MODEL_FORMAT, load_model, read_checkpoint
from flowspec.errors import FlowSpecError
from flowspec.files import save_array, write_text
from flowspec.train.images import sample_grid, save_png


def per_dim_loss(model: nn.Module, x: Tensor, c: Tensor | None = None, k: int | None = None) -> Tensor:
    """Per example: bits/dim (importance-weighted with ``k > 1``), or nats/dim for a flow on
    continuous data (the model's ``unit``), given the conditions ``c`` of a conditional flow."""
    return model.loss_per_dim(x, condition=c, k=k or 1)


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, batch_size: int = 256, k: int | None = None,
             max_batches: int | None = None, seed: int = 0, device: torch.device | None = None,
             conditions: Tensor | None = None) -> float:
    """Mean test bits/dim of ``model`` over ``data`` (importance-weighted with ``k`` samples when
    ``k > 1``; nats/dim for continuous data), given the ``conditions`` of the examples row by row for
    a conditional model. Deterministic in ``seed``; leaves torch's RNG as it was."""
    values = per_example_loss(model, data, batch_size, k, max_batches, seed, device, conditions)
    return values.sum().item() / max(len(values), 1)


@torch.no_grad()
def per_example_loss(model: nn.Module, data: Tensor, batch_size: int = 256, k: int | None = None,
                     max_batches: int | None = None, seed: int = 0, device: torch.device | None = None,
                     conditions: Tensor | None = None) -> Tensor:
    """:func:`evaluate`'s figure per example, float64 ``(N,)``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    values = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for index, start in enumerate(range(0, len(data), batch_size)):
            if max_batches is not None and index >= max_batches:
                break
            x = data[start:start + batch_size].to(device)
            c = None if conditions is None else conditions[start:start + batch_size].to(device)
            values.append(per_dim_loss(model, x, c, k).double().cpu())
    model.train(was_training)
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


@dataclass(frozen=True)
class Draws:
    """Test bits/dim of one model under independent noise draws (dequantization noise, or the
    posterior samples of a VAE): ``values[i]`` is :func:`evaluate` with seed ``seed + i``."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over the draws (0 for a single draw)."""
        n = len(self.values)
        return statistics.stdev(self.values) / math.sqrt(n) if n > 1 else 0.0


def evaluate_draws(model: nn.Module, data: Tensor, draws: int, batch_size: int = 256, k: int | None = None,
                   seed: int = 0) -> Draws:
    """:func:`evaluate` ``draws`` times with seeds ``seed .. seed + draws - 1``. The mean of the
    one-draw figures is the test bound ``-E_q[log p(x, u) - log q(u|x)] / (D log 2)`` estimated
    with ``draws`` noise samples per example; with ``k`` each value is the importance-weighted bound."""
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    return Draws(tuple(evaluate(model, data, batch_size=batch_size, k=k, seed=seed + i) for i in range(draws)))


@dataclass
class EvalReport:
    checkpoint: Path
    data: str
    examples: int
    bpd: float
    step: int | None
    iw_bpd: float | None = None
    k: int = 1
    unit: str = "bits/dim"
    conditional: bool = False
    #: standard error of the mean test figure over the test examples (per dim, the report's unit)
    stderr: float = 0.0
    #: sigma of the model's training noise (``training.noise``; 0: none)
    noise: float = 0.0

    @property
    def log_likelihood(self) -> float | None:
        """Test log-likelihood in nats per example (continuous data: ``-nats/dim * D``)."""
        return None if self.unit != "nats/dim" else -self.bpd * self.dims

    dims: int = 0

    def lines(self) -> list[str]:
        step = f" at step {self.step}" if self.step is not None else ""
        given = " (conditional, on the test conditions)" if self.conditional else ""
        what = "examples" if self.unit == "nats/dim" else "images"
        lines = [f"{self.checkpoint}{step}: test {self.unit} {self.bpd:.4f} on {self.examples} {self.data} {what}{given}"]
        if self.unit == "nats/dim":
            lines.append(f"test log-likelihood {self.log_likelihood:.4f} ± {self.stderr * self.dims:.4f} nats per "
                         f"example ({self.dims} dims; ± one standard error over the test examples)")
        if self.iw_bpd is not None:
            lines.append(f"importance-weighted (k={self.k}) test {self.unit} {self.iw_bpd:.4f}")
        elif self.k > 1:
            lines.append(f"(continuous data is scored exactly; -k {self.k} ignored)")
        if self.noise:
            lines.append(f"(a noisy model: trained on inputs plus N(0, {self.noise:g}^2) noise, it is the density of "
                         f"the noisy data, here scored at the clean data: a valid but looser figure than a model "
                         f"trained without noise)")
        return lines


def checkpoint_data(path: Path, model, data: str | None, data_dir):
    """The test split a checkpoint was trained with (or ``data`` / ``data_dir``), with conditions."""
    from flowspec.train.conditions import load_spec_data, spec_data_set, split_conditions

    raw = read_checkpoint(path, MODEL_FORMAT)
    info = raw.get("data") or {}
    kind = data or info.get("kind") or spec_data_set(model.spec)
    folder = data_dir if data_dir is not None else (info.get("dir") if data is None else None)
    same = data is None  # the run's own data: its standardisation and CSV columns
    columns = (info.get("columns") or {}) if same else {}
    dataset = load_spec_data(model.spec, kind, folder, standardize=bool(info.get("standardize")) and same, **columns)
    return raw, dataset, split_conditions(model.spec, dataset)


def evaluate_checkpoint(path: str | Path, data: str | None = None, data_dir: str | Path | None = None, k: int = 1,
                        batch_size: int = 256, seed: int = 0) -> EvalReport:
    path = Path(path)
    model = load_model(path)
    raw, dataset, (_, test_conditions) = checkpoint_data(path, model, data, data_dir)
    values = per_example_loss(model, dataset.test, batch_size=batch_size, seed=seed, conditions=test_conditions)
    bpd = values.mean().item()
    stderr = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else 0.0
    iw = (evaluate(model, dataset.test, batch_size=batch_size, seed=seed, k=k, conditions=test_conditions)
          if k > 1 and getattr(model, "dequantizes", model.unit == "bits/dim") else None)
    step = raw.get("step")
    return EvalReport(path, dataset.name, len(dataset.test), bpd, int(step) if step is not None else None, iw, k,
                      unit=model.unit, conditional=test_conditions is not None,
                      dims=int(math.prod(model.spec.input.shape)), stderr=stderr, noise=getattr(model, "noise", 0.0))


def sample_checkpoint(path: str | Path, n: int = 64, temperature: float = 0.7, output: str | Path = "samples.png",
                      seed: int = 0, condition=None, columns: int | None = None, denoise: bool = False) -> Path:
    """:func:`write_samples` of the checkpoint at ``path`` (its EMA weights)."""
    return write_samples(load_model(path), path, n, temperature, output, seed, condition, columns, denoise)


def write_samples(model, path: str | Path, n: int = 64, temperature: float = 0.7, output: str | Path = "samples.png",
                  seed: int = 0, condition=None, columns: int | None = None, denoise: bool = False) -> Path:
    """Write ``n`` samples of ``model`` (loaded from the checkpoint ``path``) as a PNG grid of
    ``columns`` columns (``.png``), an ``.npy`` array (integer levels for discrete data) or a
    ``.csv`` table. A conditional model draws them given ``condition`` (one row per sample, or a
    label or context vector for all; default: the classes in turn), and vector files get the conditions
    beside them: ``.csv`` columns after the features, ``.npy`` in ``<name>.conditions.npy``.
    ``denoise``: each sample through the flow's one-step denoiser (:meth:`FlowModel.denoise`)."""
    from flowspec.train.conditions import default_sample_conditions

    output = Path(output)
    c = _one_per_sample(condition, n) if condition is not None else default_sample_conditions(model.spec, n)
    suffix = output.suffix.lower()
    if suffix in (".npy", ".csv"):
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            drawn = model.sample(n, condition=c, temperature=temperature, generator=generator)
            values = model.to_data_space(model.denoise(drawn, condition=c) if denoise else drawn)
        values = _unstandardized(path, model, values.cpu())
        values = values if getattr(model, "continuous", False) else values.astype(np.int64)
        if suffix == ".npy":
            save_array(output, values)
            if c is not None:
                save_array(output.with_suffix(".conditions.npy"), c.numpy())
            return output
        _write_csv(output, values.reshape(n, -1), None if c is None else c.numpy(), model.spec)
        return output
    if suffix not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        raise FlowSpecError(f"{output}: write samples to a .png (grid), .npy or .csv file")
    return save_png(sample_grid(model, n, temperature, seed=seed, c=c, columns=columns, denoise=denoise), output)


def _one_per_sample(condition, n: int) -> Tensor:
    """``condition`` as one row per sample: a label, or a context vector, given once (anything
    whose first dimension is not ``n``) is repeated ``n`` times."""
    c = torch.as_tensor(condition)
    return c.expand(n, *c.shape) if c.dim() == 0 or c.shape[0] != n else c


def _unstandardized(path, model, values) -> np.ndarray:
    """Samples of a model trained with ``--standardize`` mapped back to the data's units."""
    info = read_checkpoint(path, MODEL_FORMAT).get("data") or {}
    if not info.get("standardize"):
        return values.numpy()
    _, dataset, _ = checkpoint_data(Path(path), model, None, None)
    return np.asarray(dataset.unstandardize(values))


def _write_csv(path: Path, values: np.ndarray, conditions: np.ndarray | None, spec) -> None:
    header = [f"x{i}" for i in range(values.shape[1])]
    rows = values
    if conditions is not None:
        conditions = conditions.reshape(len(conditions), -1)
        header += ["class"] if spec.condition.labelled else [f"c{i}" for i in range(conditions.shape[1])]
        rows = np.concatenate([values.astype(np.float64), conditions.astype(np.float64)], axis=1)
    discrete = not getattr(spec.input, "continuous", False)
    integer = [discrete] * values.shape[1]
    if conditions is not None:
        integer += [spec.condition.labelled] * (len(header) - values.shape[1])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(str(int(v)) if whole else repr(float(v)) for v, whole in zip(row, integer)))
    write_text(path, "\n".join(lines) + "\n")
