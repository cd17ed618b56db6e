"""Figures with matplotlib, the optional ``plot`` extra (``pip install 'flowspec[plot]'``): the
density of a 2-D model (:mod:`.density`), training curves from ``metrics.jsonl`` (:mod:`.curves`)
and titled, labelled sample and latent grids (:mod:`.grids`).

Every builder returns a :class:`matplotlib.figure.Figure` (so tests and notebooks can inspect or
show it) and :func:`save_figure` writes it. Nothing else in flowspec imports matplotlib: the core
runs without it, and asking for a figure without it is one line naming the extra.
"""

from __future__ import annotations

from pathlib import Path

from flowspec.errors import FlowSpecError

INSTALL_HINT = "pip install 'flowspec[plot]'"


def require_matplotlib():
    """``matplotlib.figure`` (headless: figures are built without pyplot), or a one-line
    :class:`FlowSpecError` naming the extra when matplotlib is missing."""
    try:
        import matplotlib.figure
    except ImportError:
        raise FlowSpecError(f"this figure needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib.figure


def new_figure(width: float, height: float):
    """A Figure not attached to pyplot (no GUI backend, nothing kept alive between calls)."""
    return require_matplotlib().Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_path(path: str | Path) -> Path:
    """``path`` if a figure can be written there (a .png, .svg or .pdf name, not a folder): checked
    before any work, so a bad ``-o`` is one line at once."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise FlowSpecError(f"{path}: write a figure to a .png, .svg or .pdf file")
    if path.is_dir():
        raise FlowSpecError(f"{path}: is a folder; name a .png, .svg or .pdf file")
    return path


def save_figure(figure, path: str | Path) -> Path:
    """Write ``figure`` (PNG, SVG or PDF by the suffix)."""
    path = figure_path(path)
    from flowspec.files import replace_atomically

    with replace_atomically(path) as stream:  # never through a link; a reader never sees half a file
        figure.savefig(stream, format=path.suffix.lower().lstrip("."))
    return path
