"""The ``flowspec`` command line (typer). Commands are thin: the work lives in the library.

Each group of verbs lives in its own module and registers itself on :data:`app`; the app imports
those modules when typer first reads its commands (:class:`~flowspec.cli.app.VerbsOnDemand`), and
:func:`main` only the one the command line names.
"""

from flowspec.cli.app import app, main

__all__ = ["app", "main"]
