"""The typer app and the one place where flowspec's errors become a clear line and an exit code."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from flowspec.errors import FlowSpecError, SpecError

app = typer.Typer(help="flowspec: YAML specs -> validated, exact normalizing flows in PyTorch.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_SPEC = 2
EXIT_FAILURE = 1

#: ``--set PATH=VALUE`` (repeatable) on every verb that reads a spec; see flowspec.spec.overrides.
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="PATH=VALUE", show_default=False,
    help="override a field of the spec before validation, value read as YAML; repeatable: "
         "--set steps=16 --set step[2].conditioner.hidden=256")]


def reports_errors(command):
    """Print a :class:`FlowSpecError` as plain lines on stderr and exit non-zero (2 for a bad spec)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as error:
            for problem in error.problems:
                errors.print(str(problem), markup=False)
            raise typer.Exit(EXIT_SPEC) from None
        except FlowSpecError as error:
            errors.print(f"error: {error}", markup=False)
            raise typer.Exit(EXIT_SPEC) from None
        except KeyboardInterrupt:
            errors.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


def main() -> None:
    app(prog_name="flowspec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
