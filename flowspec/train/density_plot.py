"""``flowspec plot-density``: the density ``p(x | c)`` of a 2-D model on a grid, as a PNG (pillow and
numpy only; no plotting library).

One panel per class for a class-conditional model (or per requested condition), side by side; each
panel is ``p`` on a ``size x size`` grid over the data's range (padded by 10%), coloured by a
viridis-like ramp from 0 to the panel's maximum, with the test points of that class as white dots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowspec.errors import FlowSpecError
from flowspec.files import save_image

#: anchors of a viridis-like ramp (t = 0, .25, .5, .75, 1)
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colour(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] -> uint8 RGB ``(*values.shape, 3)``."""
    t = np.clip(values, 0.0, 1.0) * (len(RAMP) - 1)
    low = np.floor(t).astype(int).clip(0, len(RAMP) - 2)
    frac = (t - low)[..., None]
    return (RAMP[low] * (1 - frac) + RAMP[low + 1] * frac).round().astype(np.uint8)


@torch.no_grad()
def density_panels(model, bounds: tuple[float, float, float, float], size: int = 160,
                   conditions: list | None = None) -> list[np.ndarray]:
    """``p(x | c)`` on a ``size x size`` grid over ``bounds = (x0, x1, y0, y1)`` (row 0 at the top,
    ``y1``), one array per condition (one, unconditionally)."""
    x0, x1, y0, y1 = bounds
    xs = torch.linspace(x0, x1, size, dtype=torch.float64)
    ys = torch.linspace(y1, y0, size, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    model = model.double().eval()
    panels = []
    for c in (conditions if conditions is not None else [None]):
        given = None if c is None else torch.as_tensor(c).expand(len(grid), *torch.as_tensor(c).shape)
        log_p = torch.cat([model.log_prob(part, condition=None if given is None else given[i:i + 4096])
                           for i, part in zip(range(0, len(grid), 4096), grid.split(4096))])
        panels.append(log_p.exp().view(size, size).numpy())
    return panels


def plot_density(model, output: str | Path, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                 size: int = 160, conditions: list | None = None) -> Path:
    """Write the density panels of a 2-D model to ``output`` (PNG), with ``points`` overlaid."""
    if tuple(model.input_shape) != (2,) or not getattr(model, "continuous", False):
        raise FlowSpecError(f"plot-density draws 2-D continuous models (input: {{shape: [2], data: continuous}}); "
                            f"this one has input shape {list(model.input_shape)}")
    condition = getattr(model.spec, "condition", None)
    if conditions is None and condition is not None:
        if not condition.labelled:
            raise FlowSpecError(f"a context-conditional model (condition.dim: {condition.dim}) needs --context")
        conditions = list(range(condition.classes))
    if points is not None and len(points):
        low, high = points.min(0), points.max(0)
        pad = 0.1 * (high - low + 1e-9)
        bounds = (low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1])
    else:
        bounds = (-3.0, 3.0, -3.0, 3.0)
    panels = density_panels(model, bounds, size, conditions)
    images = []
    for index, panel in enumerate(panels):
        rgb = colour(panel / max(float(panel.max()), 1e-300))
        if points is not None:
            keep = points if labels is None or conditions is None else points[labels == conditions[index]]
            cols = ((keep[:, 0] - bounds[0]) / (bounds[1] - bounds[0]) * (size - 1)).round().astype(int)
            rows = ((bounds[3] - keep[:, 1]) / (bounds[3] - bounds[2]) * (size - 1)).round().astype(int)
            inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
            rgb[rows[inside], cols[inside]] = 255
        images.append(rgb)
    gap = np.full((size, 4, 3), 255, dtype=np.uint8)
    row = np.concatenate([part for image in images for part in (image, gap)][:-1], axis=1)
    return save_image(row, output)
