"""Sample and latent grids as figures: the same pixel grid as the plain PNG
(:func:`flowspec.train.images.tile`), with a title and labels of rows (a class per row) and columns
(a strength, an interpolation point) on the axes."""

from __future__ import annotations

import math

import numpy as np
import torch

from flowspec.plot import new_figure


def grid_figure(images: np.ndarray, columns: int, title: str | None = None, row_labels: list[str] | None = None,
                column_labels: list[str] | None = None, row_name: str | None = None, column_name: str | None = None):
    """``images`` uint8 ``(N, C, H, W)`` in reading order, ``columns`` a row; the Figure shows the
    grid with ``row_labels`` on the left axis and ``column_labels`` on the top one (ticks at each cell)."""
    from flowspec.train.images import tile

    n, _, h, w = images.shape
    rows = -(-n // columns)
    grid = tile(images, columns=columns)
    scale = max(1, 32 // max(h, w))
    cell_h, cell_w = h * scale + 1, w * scale + 1
    figure = new_figure(max(2.5, 0.55 * columns + 1.2), max(2.0, 0.55 * rows + 0.9))
    ax = figure.add_subplot()
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([1 + cell_w * (q + 0.5) - 0.5 for q in range(columns)],
                  labels=column_labels if column_labels is not None else [""] * columns)
    ax.set_yticks([1 + cell_h * (r + 0.5) - 0.5 for r in range(rows)],
                  labels=row_labels if row_labels is not None else [""] * rows)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if row_name:
        ax.set_ylabel(row_name)
    if column_name:
        ax.set_xlabel(column_name)
    if title:
        ax.set_title(title, pad=12 if column_labels else 6)
    return figure


def sample_figure(model, n: int = 64, temperature: float = 0.7, seed: int = 0, condition=None,
                  columns: int | None = None, title: str | None = None, labels: bool = False,
                  per_class: int | None = None, denoise: bool = False):
    """``flowspec sample ... --title T --labels``: samples of ``model`` (a model, a checkpoint path
    or ``pretrained:NAME``) as a Figure, the same samples as the plain PNG grid. ``per_class``
    draws that many of each class, one row per class; ``condition`` gives one per sample (or one for
    all); ``labels`` names the class of each row; ``denoise`` passes the samples through the
    flow's one-step denoiser."""
    from flowspec.compile.export import load_model
    from flowspec.errors import FlowSpecError
    from flowspec.train.conditions import class_grid, default_sample_conditions
    from flowspec.train.images import sample_images

    if not hasattr(model, "spec"):
        model = load_model(model)
    spec_condition = getattr(model.spec, "condition", None)
    if labels and (spec_condition is None or not spec_condition.labelled):
        raise FlowSpecError("--labels names classes: this model is not class-conditional")
    if per_class is not None:
        if spec_condition is None or not spec_condition.labelled:
            raise FlowSpecError("per_class: this model is not class-conditional")
        condition, n, columns = class_grid(spec_condition.classes, per_class), spec_condition.classes * per_class, per_class
    if condition is not None:
        c = torch.as_tensor(condition)
        c = c.expand(n, *c.shape) if c.dim() == 0 or c.shape[0] != n else c
    else:
        c = default_sample_conditions(model.spec, n)
    images = sample_images(model, n, temperature, seed, c, denoise)
    columns = columns or math.ceil(math.sqrt(n))  # as the plain grid: a row per class, or square
    row_labels, row_name = None, None
    if labels:
        rows = -(-n // columns)
        row_labels = [str(int(c[r * columns])) for r in range(rows)]
        row_name = "class"
    return grid_figure(images, columns, title, row_labels=row_labels, row_name=row_name)
