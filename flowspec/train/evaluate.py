"""Evaluate and sample a trained checkpoint (its EMA weights, as :func:`flowspec.load_model` reads).

Test bits/dim is the mean over the test split of ``-(log p(y) - log q(u|x) - D log n) / (D log 2)``
with one dequantization sample per image; models whose ``bits_per_dim`` takes ``k`` also report
the importance-weighted bound ``-log (1/k sum_i p(x, u_i) / q(u_i|x))``, which tightens with ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowspec.compile.export import load_model, read_checkpoint, MODEL_FORMAT
from flowspec.errors import FlowSpecError


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
        elif self.k > 1:
            lines.append(f"(this model has no importance-weighted bound; -k {self.k} ignored)")
        return lines


def evaluate_checkpoint(path: str | Path, data: str | None = None, data_dir: str | Path | None = None, k: int = 1,
                        batch_size: int = 256, seed: int = 0) -> EvalReport:
    from flowspec.data import load_data
    from flowspec.train.runner import evaluate, supports_iw

    path = Path(path)
    model = load_model(path)
    raw = read_checkpoint(path, MODEL_FORMAT)
    info = raw.get("data") or {}
    kind = data or info.get("kind") or "digits"
    folder = data_dir if data_dir is not None else (info.get("dir") if data is None else None)
    dataset = load_data(kind, folder, tuple(model.spec.input.shape), model.spec.input.levels,
                        getattr(model.spec.input, "bits", None))
    bpd = evaluate(model, dataset.test, batch_size=batch_size, seed=seed)
    iw = evaluate(model, dataset.test, batch_size=batch_size, seed=seed, k=k) if k > 1 and supports_iw(model) else None
    step = raw.get("step")
    return EvalReport(path, dataset.name, len(dataset.test), bpd, int(step) if step is not None else None, iw, k)


def sample_checkpoint(path: str | Path, n: int = 64, temperature: float = 0.7, output: str | Path = "samples.png",
                      seed: int = 0) -> Path:
    """Write ``n`` samples as a PNG grid (``.png``) or as integer levels in a ``.npy`` array."""
    import torch

    from flowspec.train.runner import sample_grid, save_png

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
