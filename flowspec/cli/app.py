"""The typer app and the one place where flowspec's errors become a clear line and an exit code."""

from __future__ import annotations

import errno
import functools
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from flowspec.errors import FlowSpecError, SpecError, one_line

app = typer.Typer(help="flowspec: YAML specs -> validated, exact normalizing flows in PyTorch.",
                  add_completion=False, pretty_exceptions_enable=False)
# Neither console reads markup (``[bold]``) or emoji codes (``:100:``) in what it prints: a message
# quotes the user's files, names and values, and must show them exactly as they are.
console = Console(soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

EXIT_SPEC = 2
EXIT_FAILURE = 1

#: ``--set PATH=VALUE`` (repeatable) on every verb that reads a spec; see flowspec.spec.overrides.
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="PATH=VALUE", show_default=False,
    help="override a field of the spec before validation, value read as YAML; repeatable: "
         "--set steps=16 --set step[2].conditioner.hidden=256")]


@app.callback(invoke_without_command=True)
def _no_command(context: typer.Context) -> None:
    """``flowspec`` alone prints the help and exits 0."""
    if context.invoked_subcommand is None:
        console.print(context.get_help(), markup=False, highlight=False)
        raise typer.Exit(0)


#: what an OSError of a file operation means, said for the user (errno -> sentence)
OS_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or folder (does its parent folder exist?)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "a file of that name is in the way",
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENAMETOOLONG: "the name is too long",
}


def describe_os_error(error: OSError) -> str:
    """One line naming the path and the reason of a failed file operation."""
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    reason = OS_REASONS.get(error.errno) or error.strerror or str(error) or type(error).__name__
    where = " -> ".join(paths) if paths else "a file operation"
    return f"{where}: {reason}"


def reports_errors(command):
    """Print a :class:`FlowSpecError` as plain lines on stderr and exit non-zero (2 for a bad spec);
    an :class:`OSError` (permission, missing parent, a file in the way, a full disk) is one line
    naming the path, exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SpecError as error:
            for problem in error.problems:
                errors.print(str(problem), markup=False)
            raise typer.Exit(EXIT_SPEC) from None
        except FlowSpecError as error:
            errors.print(f"error: {one_line(str(error))}", markup=False)
            raise typer.Exit(EXIT_SPEC) from None
        except OSError as error:
            errors.print(f"error: {one_line(describe_os_error(error))}", markup=False)
            raise typer.Exit(EXIT_SPEC) from None
        except KeyboardInterrupt:
            errors.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


def main() -> None:
    app(prog_name="flowspec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
