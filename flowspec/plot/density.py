"""``flowspec plot-density``: ``p(x | c)`` of a 2-D continuous model, one titled panel per class
(or per requested condition) on shared axes ``x0`` / ``x1``, a colour bar of the density, and the
test points of each panel's class overlaid."""

from __future__ import annotations

import numpy as np

from flowspec.plot import new_figure
from flowspec.train.density_plot import density_bounds, density_conditions, density_panels


def density_figure(model, points: np.ndarray | None = None, labels: np.ndarray | None = None, size: int = 160,
                   conditions: list | None = None, class_names: list[str] | None = None, title: str | None = None):
    """The Figure: a panel of ``p(x | c)`` per condition (``imshow`` over the data's range, padded by
    10%), one colour bar for all panels on a common scale, ``points`` as white dots (a class's own
    points only when ``labels`` are given)."""
    asked = conditions
    conditions = density_conditions(model, conditions)
    bounds = density_bounds(points)
    panels = density_panels(model, bounds, size, conditions)
    top = max(float(max(panel.max() for panel in panels)), 1e-300)
    figure = new_figure(3.4 * len(panels) + 0.8, 3.4)
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    image = None
    for index, (ax, panel) in enumerate(zip(axes, panels)):
        image = ax.imshow(panel, extent=bounds, origin="upper", cmap="viridis", vmin=0.0, vmax=top, aspect="auto")
        if points is not None and len(points):
            keep = points
            if labels is not None and conditions is not None and asked is None:
                keep = points[labels == conditions[index]]
            ax.scatter(keep[:, 0], keep[:, 1], s=4, c="white", edgecolors="none", alpha=0.8, label="test points")
        ax.set_xlabel("x0")
        if index == 0:
            ax.set_ylabel("x1")
        ax.set_title(_panel_title(model, conditions, index, class_names))
    figure.colorbar(image, ax=list(axes), label="p(x | c)" if conditions is not None else "p(x)")
    if title:
        figure.suptitle(title)
    return figure


def _panel_title(model, conditions, index, class_names) -> str:
    if conditions is None:
        return model.spec.name or "p(x)"
    c = conditions[index]
    if isinstance(c, int):
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        return f"class {name}"
    values = ", ".join(f"{float(v):g}" for v in np.atleast_1d(np.asarray(c, dtype=float)))
    return f"context ({values})"
