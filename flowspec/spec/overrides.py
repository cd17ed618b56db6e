"""``--set PATH=VALUE``: change fields of a loaded spec before it is validated.

A path is a dotted walk into the YAML data with list indices, ``steps``, ``step[2].conditioner.hidden``
or ``training.lr``; a value is parsed as YAML (``16`` is a number, ``'16'`` a string, ``{kind: mlp}``
a mapping, an empty value ``null``). Missing mappings on the way are created, so ``--set
training.lr=0.01`` works on a spec without a ``training:`` section. A bare-string layer row
(``- actnorm``) becomes ``{kind: actnorm}`` when a path goes into it.

Overrides are applied to the data, not to the validated model: an override that breaks the spec
gets the same error the YAML file would, with ``--set PATH=VALUE`` named as its source (see
:meth:`flowspec.spec.yaml_source.SourceMap.problem`). Values are read like spec files, ``1e-3``
a number (:class:`~flowspec.spec.yaml_source.SpecLoader`).
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping


from flowspec.errors import Problem, SpecError, dotted, one_line
from flowspec.spec.yaml_source import load_bounded_value

_PART = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_-]*|[0-9]+)\s*((?:\[\s*-?[0-9]+\s*\])*)\s*$")


@dataclass(frozen=True)
class Override:
    """One ``PATH=VALUE``: ``path`` as a tuple of keys and indices, ``value`` parsed, ``text`` as given."""

    path: tuple
    value: Any
    text: str

    @property
    def source(self) -> str:
        """How errors name this override: ``--set PATH=VALUE``."""
        return override_source(self.text)


MAX_SHOWN = 80  # characters of a --set text that an error quotes


def override_source(text: str) -> str:
    """``--set PATH=VALUE`` as errors name it, on one line: a long value cut to :data:`MAX_SHOWN`
    characters, a newline or other control character written as its escape (``\\n``)."""
    return "--set " + one_line(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def parse_path(text: str, source: str) -> tuple:
    """``step[2].conditioner.hidden`` -> ``('step', 2, 'conditioner', 'hidden')``; ``layers.3``
    indexes too."""
    path: list = []
    for part in text.split("."):
        match = _PART.match(part)
        if not match:
            raise SpecError(Problem(f"cannot read the path {text!r}", (), source,
                                    hint="write keys with dots and list indices in brackets, "
                                         "e.g. step[2].conditioner.hidden"))
        key, indices = match.groups()
        path.append(int(key) if key.isdigit() else key)
        path += [int(i) for i in re.findall(r"-?[0-9]+", indices)]
    return tuple(path)


def parse_override(text: str) -> Override:
    """Read ``PATH=VALUE`` (the value is YAML)."""
    source = override_source(text)
    if "=" not in text:
        raise SpecError(Problem("an override is PATH=VALUE", (), source, hint="e.g. --set steps=16"))
    path_text, value_text = text.split("=", 1)
    path = parse_path(path_text.strip(), source)
    value = load_bounded_value(value_text, source, path) if value_text.strip() else None
    return Override(path, value, text)


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> list[Override]:
    """``PATH=VALUE`` strings (values parsed as YAML), or a mapping ``{PATH: value}`` (values as they are)."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return [Override(parse_path(str(path), f"--set {path}"), value, f"{path}={value!r}")
                for path, value in overrides.items()]
    return [parse_override(str(text)) for text in overrides]


def _did_you_mean(word, options: Iterable) -> str | None:
    options = sorted({str(o) for o in options})
    close = difflib.get_close_matches(str(word), options, n=3, cutoff=0.5)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    return f"known here: {', '.join(options)}" if options else None


def apply_overrides(data: Any, overrides: list[Override],
                    fields_at: Callable[[Any, tuple], list[str]] | None = None) -> tuple[Any, list[Override]]:
    """A copy of ``data`` with every override applied in order, and the overrides with negative
    indices resolved.

    ``fields_at(data, path)`` names the fields the spec allows in the mapping at ``path`` (for
    the did-you-mean of a path that leads nowhere). Raises :class:`SpecError` naming ``--set``
    when a path cannot be followed: an index out of range, a key into a number, a missing key
    followed by an index.
    """
    data, resolved = copy.deepcopy(data), []
    for override in overrides:
        resolved.append(_apply(data, override, fields_at))
    return data, resolved


def _apply(data: Any, override: Override, fields_at) -> Override:
    """Write ``override`` into ``data`` in place; return it with its path resolved."""
    path, source = override.path, override.source
    if not path:
        raise SpecError(Problem("the path is empty", (), source))
    node, walked = data, ()
    for depth, part in enumerate(path):
        if isinstance(node, list):
            if not isinstance(part, int):
                raise SpecError(Problem(f"{dotted(walked)} is a list; index it with [i], not .{part}",
                                        walked, source, hint=f"e.g. {dotted(walked + (0, part))}"))
            if not -len(node) <= part < len(node):
                raise SpecError(Problem(f"index {part} is out of range: {dotted(walked)} has "
                                        f"{len(node)} item{'s' if len(node) != 1 else ''}",
                                        walked + (part,), source))
            part %= len(node)
        elif isinstance(node, dict):
            if isinstance(part, int):
                raise SpecError(Problem(f"{dotted(walked) if walked else 'the spec'} is a mapping; "
                                        f"it has no item [{part}]", walked, source))
            if part not in node and depth + 1 < len(path) and isinstance(path[depth + 1], int):
                options = list(node) + (fields_at(data, walked) if fields_at else [])
                raise SpecError(Problem(f"unknown field {part!r}: there is no list to index",
                                        walked + (part,), source, hint=_did_you_mean(part, options)))
        else:
            what = "null" if node is None else f"a {type(node).__name__}"
            raise SpecError(Problem(f"{dotted(walked)} is {what}, not a mapping or list", walked, source))
        if depth + 1 == len(path):
            node[part] = copy.deepcopy(override.value)
            break
        child = node[part] if isinstance(node, list) or part in node else None
        if isinstance(child, str) and isinstance(node, list):
            child = {"kind": child}  # a bare layer row, `- actnorm`
        elif child is None:
            child = {}  # a section the file leaves out
        node[part] = child
        node, walked = child, walked + (part,)
    return Override(walked + (part,), override.value, override.text)
