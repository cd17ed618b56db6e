"""Named exceptions that carry where in the YAML a problem is.

Every user-facing error is a :class:`SpecError` holding one or more :class:`Problem` rows,
each printed as ``file:line:col: field.path: message (hint: ...)``. The CLI catches
:class:`FlowSpecError` once and prints it without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def one_line(text: str) -> str:
    """``text`` with every character that would break or rewrite the line (newlines, ``\\x1e``,
    other control characters) written as its escape: a message stays one line, as written."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dotted(path: tuple) -> str:
    """``('layers', 3, 'conditioner', 'hidden')`` -> ``layers[3].conditioner.hidden``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


@dataclass(frozen=True)
class Problem:
    """One problem in a spec, located in its YAML file."""

    message: str
    path: tuple = ()
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return self.text()

    def text(self, severity: str = "") -> str:
        """``file:line:col: [severity: ]field.path: message (hint: ...)``."""
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {severity + ': ' if severity else ''}{dotted(self.path)}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return one_line(text)


class FlowSpecError(Exception):
    """Base class of every error flowspec reports to a user."""


class SpecError(FlowSpecError):
    """A spec that cannot be loaded, validated or compiled; holds every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ShapeError(SpecError):
    """A dimension or invertibility rule of a layer is broken (raised by the graph validator)."""


@dataclass
class RuleViolation(Exception):
    """Raised by a layer's pure shape rule; the graph attaches the YAML location.

    ``field`` names the offending field of the layer's config (relative path).
    """

    message: str
    hint: str | None = None
    field: tuple = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.message


class CheckpointError(FlowSpecError):
    """A checkpoint or model file that is missing, corrupt or not flowspec's."""


class DataError(FlowSpecError):
    """A data set that is missing or does not fit the spec."""


class ConditionError(FlowSpecError, ValueError):
    """A condition ``c`` that is missing for a conditional model, given to an unconditional one, or
    of the wrong kind, shape or range."""
