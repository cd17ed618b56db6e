"""The typer app and the one place where flowspec's errors become a clear line and an exit code."""

from __future__ import annotations

import errno
import functools
import importlib
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from flowspec.errors import FlowSpecError, SpecError, one_line

#: verb -> the module of flowspec.cli that registers it
VERB_MODULES = {"validate": "core", "expand": "core", "build": "core", "check": "core", "schema": "core",
                "train": "train", "eval": "train", "sample": "train", "bench": "bench",
                "plot": "plots", "plot-density": "plots", "export": "export", "pretrained": "export",
                "render": "render_report", "report": "render_report", "encode": "latent", "decode": "latent",
                "reconstruct": "latent", "interpolate": "latent", "manipulate": "latent"}


class VerbsOnDemand(typer.Typer):
    """The app. Its verbs' modules are imported when typer first reads the command list: all of
    them, or, from :func:`main`, only the module of the verb on the command line (building every
    verb's click command costs more than validating a spec)."""

    only: str | None = None  # a VERB_MODULES value: import just that module
    _loading = False

    @property
    def registered_commands(self) -> list:
        if not self._loading:
            self._loading = True
            try:
                for module in dict.fromkeys(VERB_MODULES.values()) if self.only is None else [self.only]:
                    importlib.import_module(f"flowspec.cli.{module}")
            finally:
                self._loading = False
        return self.__dict__["_commands"]

    @registered_commands.setter
    def registered_commands(self, commands: list) -> None:
        self.__dict__["_commands"] = commands


class LazyConsole:
    """rich's ``Console``, imported on first use. A plain string printed without markup to a pipe or
    a file (not a terminal) is written as it is, so the spec tools' one-line answers do not
    import rich; tables, progress and anything printed to a terminal go through rich."""

    def __init__(self, stderr: bool = False, **options):
        self._stderr, self._options, self._console = stderr, options, None

    def _rich(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, **self._options)
        return self._console

    def print(self, *objects, markup: bool | None = None, highlight: bool | None = None, **options) -> None:
        stream = sys.stderr if self._stderr else sys.stdout
        plain = ((markup if markup is not None else self._options.get("markup", True)) is False
                 and not options and all(isinstance(o, str) for o in objects))
        if plain and not getattr(stream, "isatty", lambda: False)():
            stream.write(" ".join(objects) + "\n")
            return
        self._rich().print(*objects, markup=markup, highlight=highlight, **options)

    def __getattr__(self, name: str):
        return getattr(self._rich(), name)


class OneLineUsageErrors(TyperGroup):
    """The command group. A usage error (a missing argument, an unknown option or verb, a value out
    of its range) is one line on stderr naming the command and what is wrong, exit 2: not typer's
    framed box of several lines."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as error:  # the base of typer's (click's) usage and parameter errors
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else prog_name or "flowspec"
            hint = f" (see '{command} --help')" if context is not None else ""
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            errors.print(f"{command}: {one_line(message)}{hint}", markup=False)
            sys.exit(getattr(error, "exit_code", EXIT_SPEC))
        except (typer.Abort, KeyboardInterrupt):
            errors.print("interrupted", markup=False)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


app = VerbsOnDemand(help="flowspec: YAML specs -> validated, exact normalizing flows in PyTorch.",
                    add_completion=False, pretty_exceptions_enable=False, cls=OneLineUsageErrors)
# Neither console reads markup (``[bold]``) or emoji codes (``:100:``) in what it prints: a message
# quotes the user's files, names and values, and must show them exactly as they are.
console = LazyConsole(soft_wrap=True, markup=False, emoji=False)
errors = LazyConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

EXIT_SPEC = 2
EXIT_FAILURE = 1

#: ``--set PATH=VALUE`` (repeatable) on every verb that reads a spec; see flowspec.spec.overrides.
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="PATH=VALUE", show_default=False,
    help="override a field of the spec before validation, value read as YAML; repeatable: "
         "--set steps=16 --set step[2].conditioner.hidden=256")]

#: ``--title`` of the verbs that draw a grid or a figure (a matplotlib figure: flowspec[plot])
TitleOption = Annotated[Optional[str], typer.Option(
    "--title", show_default=False, help="title over the picture (drawn as a matplotlib figure: flowspec[plot])")]


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
    """The ``flowspec`` command: imports only the module of the verb asked for (all of them for
    ``--help``, no verb or an unknown one)."""
    verb = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    app.only = VERB_MODULES.get(verb) if "--help" not in sys.argv[1:2] else None
    app(prog_name="flowspec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
