"""The density ``p(x | c)`` of a 2-D model on a grid, the numbers behind ``flowspec plot-density``
(drawn by :mod:`flowspec.plot.density`).

One array per class for a class-conditional model (or per requested condition): ``p`` on a
``size x size`` grid over the data's range, padded by 10% on each side.
"""

from __future__ import annotations

import numpy as np
import torch

from flowspec.errors import FlowSpecError


def density_conditions(model, conditions: list | None = None) -> list | None:
    """Check that ``model`` is a 2-D continuous model; the conditions of its panels (every class of a
    class-conditional model unless given; ``None``: one unconditional panel)."""
    if tuple(model.input_shape) != (2,) or not getattr(model, "continuous", False):
        raise FlowSpecError(f"plot-density draws 2-D continuous models (input: {{shape: [2], data: continuous}}); "
                            f"this one has input shape {list(model.input_shape)}")
    condition = getattr(model.spec, "condition", None)
    if conditions is None and condition is not None:
        if not condition.labelled:
            raise FlowSpecError(f"a context-conditional model (condition.dim: {condition.dim}) needs --context")
        conditions = list(range(condition.classes))
    return conditions


def density_bounds(points: np.ndarray | None) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)``: the points' range padded by 10% (``[-3, 3]^2`` without points)."""
    if points is None or not len(points):
        return (-3.0, 3.0, -3.0, 3.0)
    low, high = points.min(0), points.max(0)
    pad = 0.1 * (high - low + 1e-9)
    return (float(low[0] - pad[0]), float(high[0] + pad[0]), float(low[1] - pad[1]), float(high[1] + pad[1]))


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
