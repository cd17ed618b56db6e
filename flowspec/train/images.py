"""Sample grids: ``n`` samples at a temperature, drawn as one uint8 image and written as PNG.

Every model family gives ``sample(n, condition=, temperature=, generator=)`` and ``to_data_space(y)``
(levels ``0 .. n-1``; :class:`~flowspec.core.protocol.DensityModel`); the grid maps level ``l`` to
grey ``round(255 l / (n - 1))``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from flowspec.errors import FlowSpecError
from flowspec.files import save_image


def sample_grid(model: nn.Module, n: int, temperature: float, seed: int = 0, c: Tensor | None = None,
                columns: int | None = None, denoise: bool = False) -> np.ndarray:
    """``n`` samples at ``temperature`` (given the conditions ``c`` of a conditional model) as one
    uint8 image grid ``(H', W')`` or ``(H', W', 3)`` of ``columns`` columns (default: square)."""
    return tile(sample_images(model, n, temperature, seed, c, denoise), columns=columns)


def sample_images(model: nn.Module, n: int, temperature: float, seed: int = 0, c: Tensor | None = None,
                  denoise: bool = False) -> np.ndarray:
    """``n`` samples at ``temperature`` as uint8 images ``(N, C, H, W)``, level ``l`` drawn as grey
    ``round(255 l / (n - 1))``; ``denoise``: each through the flow's one-step denoiser first."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        drawn = model.sample(n, condition=c, temperature=temperature, generator=generator)
        if denoise:
            drawn = model.denoise(drawn, condition=c)
        levels_values = model.to_data_space(drawn).float().cpu()
    model.train(was_training)
    levels = model.spec.input.levels
    images = as_images(levels_values, tuple(model.spec.input.shape))
    return (images.clamp(0, levels - 1) * (255.0 / (levels - 1))).round().to(torch.uint8).numpy()


def as_images(values: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``(N, *shape)`` -> ``(N, C, H, W)``: images as they are, a square vector as a grey square."""
    if len(shape) == 3 and shape[0] in (1, 3):
        return values.reshape(-1, *shape)
    side = math.isqrt(int(np.prod(shape)))
    if len(shape) == 1 and side * side == shape[0]:
        return values.reshape(-1, 1, side, side)
    raise FlowSpecError(f"samples of shape {list(shape)} cannot be drawn as images "
                        f"(need [1|3, H, W] or a square vector); write them as .npy instead")


def tile(images: np.ndarray, pad: int = 1, columns: int | None = None) -> np.ndarray:
    """``(N, C, H, W)`` uint8 -> a grid of ``columns`` (default ``ceil(sqrt(N))``) columns, each
    image upscaled to >= 32 px."""
    n, c, h, w = images.shape
    scale = max(1, 32 // max(h, w))
    images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    return save_image(grid, path)
