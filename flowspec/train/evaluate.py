"""Test bits/dim of a model, and of a trained checkpoint (its EMA weights, as
:func:`flowspec.load_model` reads them); samples of a checkpoint.

Test bits/dim is the mean over the test split of ``-(log p(y) - log q(u|x) - D log n) / (D log 2)``
with one dequantization (or posterior) sample per example; with ``k > 1`` it is the
importance-weighted bound ``-log (1/k sum_i p(x, u_i) / q(u_i|x)) / (D log 2)`` (Burda et al. 2016,
arXiv:1509.00519), which tightens with ``k``. Both model families take ``bits_per_dim(x, k)``.
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
from flowspec.train.images import sample_grid, save_png


@torch.no_grad()
def evaluate(model: nn.Module, data: Tensor, batch_size: int = 256, k: int | None = None,
             max_batches: int | None = None, seed: int = 0, device: torch.device | None = None) -> float:
    """Mean test bits/dim of ``model`` over ``data`` (importance-weighted with ``k`` samples when
    ``k > 1``). Deterministic in ``seed``; leaves torch's RNG as it was."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for index, start in enumerate(range(0, len(data), batch_size)):
            if max_batches is not None and index >= max_batches:
                break
            x = data[start:start + batch_size].to(device)
            total += model.bits_per_dim(x, k=k or 1).double().sum().item()
            count += len(x)
    model.train(was_training)
    return total / max(count, 1)


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

    def lines(self) -> list[str]:
        step = f" at step {self.step}" if self.step is not None else ""
        lines = [f"{self.checkpoint}{step}: test bits/dim {self.bpd:.4f} on {self.examples} {self.data} images"]
        if self.iw_bpd is not None:
            lines.append(f"importance-weighted (k={self.k}) test bits/dim {self.iw_bpd:.4f}")
        return lines


def evaluate_checkpoint(path: str | Path, data: str | None = None, data_dir: str | Path | None = None, k: int = 1,
                        batch_size: int = 256, seed: int = 0) -> EvalReport:
    from flowspec.data import load_data

    path = Path(path)
    model = load_model(path)
    raw = read_checkpoint(path, MODEL_FORMAT)
    info = raw.get("data") or {}
    kind = data or info.get("kind") or "digits"
    folder = data_dir if data_dir is not None else (info.get("dir") if data is None else None)
    dataset = load_data(kind, folder, tuple(model.spec.input.shape), model.spec.input.levels,
                        bits=getattr(model.spec.input, "bits", None))
    bpd = evaluate(model, dataset.test, batch_size=batch_size, seed=seed)
    iw = evaluate(model, dataset.test, batch_size=batch_size, seed=seed, k=k) if k > 1 else None
    return EvalReport(path, dataset.name, len(dataset.test), bpd, raw.get("step"), iw, k)


def sample_checkpoint(path: str | Path, n: int = 64, temperature: float = 0.7, output: str | Path = "samples.png",
                      seed: int = 0) -> Path:
    """Write ``n`` samples as a PNG grid (``.png``) or as integer levels in a ``.npy`` array."""
    output = Path(output)
    model = load_model(path)
    if output.suffix == ".npy":
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            values = model.to_data_space(model.sample(n, temperature, generator=generator))
        output.parent.mkdir(parents=True, exist_ok=True)
        np.save(output, values.cpu().numpy().astype(np.int64))
        return output
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        raise FlowSpecError(f"{output}: write samples to a .png (grid) or .npy file")
    return save_png(sample_grid(model, n, temperature, seed=seed), output)
