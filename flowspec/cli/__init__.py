"""The ``flowspec`` command line (typer). Commands are thin: the work lives in the library.

Each group of verbs lives in its own module and registers itself on :data:`app`.
"""

from flowspec.cli.app import app, main
from flowspec.cli import core  # noqa: F401  (registers build, validate, expand, check, schema)
from flowspec.cli import train  # noqa: F401  (registers train, eval, sample)
from flowspec.cli import bench  # noqa: F401  (registers bench)
from flowspec.cli import render_report  # noqa: F401  (registers render, report)
from flowspec.cli import latent  # noqa: F401  (registers encode, decode, reconstruct, interpolate, manipulate)
from flowspec.cli import plots  # noqa: F401  (registers plot, plot-density)
from flowspec.cli import export  # noqa: F401  (registers export, pretrained)

__all__ = ["app", "main"]
