"""Safe YAML loading that remembers the line and column of every key and item."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flowspec.errors import Problem, SpecError


def overridden_by(overrides: list, path: tuple):
    """The ``--set`` override (:class:`~flowspec.spec.overrides.Override`) a problem at ``path``
    comes from: the last one that wrote ``path`` or a field above it, else the last one that wrote
    below it (a problem of the mapping it changed)."""
    path = tuple(path)
    for override in reversed(overrides):
        if path[:len(override.path)] == override.path:
            return override
    for override in reversed(overrides):
        if override.path[:len(path)] == path:
            return override
    return None


@dataclass
class SourceMap:
    """Maps a field path (tuple of keys and indices) to its 1-based (line, column).

    Fields written by ``--set`` overrides are located at the override instead of the file.
    """

    file: str
    marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    overrides: list = field(default_factory=list)  # flowspec.spec.overrides.Override, in order

    def locate(self, path: tuple) -> tuple[int | None, int | None]:
        """Position of ``path``, or of its longest prefix that exists in the file."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, (None, None))

    def problem(self, message: str, path: tuple = (), hint: str | None = None,
                at: tuple | None = None) -> Problem:
        """A :class:`Problem` for ``path``; ``at`` overrides the path used for the position."""
        override = overridden_by(self.overrides, tuple(path if at is None else at))
        if override is not None:
            return Problem(message, tuple(path), override.source, None, None, hint)
        line, column = self.locate(path if at is None else at)
        return Problem(message, tuple(path), self.file, line, column, hint)


class SpecLoader(yaml.SafeLoader):
    """The safe loader, reading ``1e-3`` and ``1.5e3`` as numbers as YAML 1.2 (and editors) do;
    YAML 1.1 wants a dot and a signed exponent (``1.0e-3``) and gives the string '1e-3', which
    strict validation would reject."""


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                                 list("-+.0123456789"))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _to_python(loader: SpecLoader, node: yaml.Node, path: tuple, source: SourceMap):
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise SpecError(Problem("mapping keys must be plain names", path, source.file,
                                        *_mark(key_node)))
            if key in result:
                raise SpecError(Problem(f"duplicate key {key!r}", path + (key,), source.file,
                                        *_mark(key_node), hint="each field may appear once"))
            source.marks[path + (key,)] = _mark(key_node)
            result[key] = _to_python(loader, value_node, path + (key,), source)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            source.marks[path + (index,)] = _mark(item)
            items.append(_to_python(loader, item, path + (index,), source))
        return items
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, file: str = "<spec>") -> tuple[object, SourceMap]:
    """Parse YAML text with the safe loader; return the data and its source map.

    Any YAML syntax problem becomes a :class:`SpecError` naming the file and line.
    """
    source = SourceMap(file)
    try:
        loader = SpecLoader(text)
    except yaml.reader.ReaderError as error:  # a control character anywhere in the text
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise SpecError(Problem(f"invalid YAML: character #x{error.character:04x} is not allowed",
                                (), file, line, column)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(Problem("the file is empty; a spec is a YAML mapping", (), file, 1, 1))
        source.marks[()] = _mark(node)
        data = _to_python(loader, node, (), source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = " ".join(str(x) for x in (error.context, error.problem) if x)
        opened = error.context_mark  # e.g. where an unclosed bracket opens
        hint = (f"the {error.context.replace('while parsing ', '')} opens at line {opened.line + 1}"
                if opened and error.context and mark and opened.line != mark.line else None)
        raise SpecError(Problem(f"invalid YAML: {message}", (), file, line, column, hint)) from None
    except yaml.YAMLError as error:
        raise SpecError(Problem(f"invalid YAML: {error}", (), file)) from None
    except RecursionError:
        raise SpecError(Problem("invalid YAML: nested too deeply", (), file)) from None
    finally:
        loader.dispose()
    return data, source


def read_yaml(path: str | Path) -> tuple[object, SourceMap]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(Problem(f"no such file: {path}", (), str(path))) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(Problem(f"cannot read the file: {error}", (), str(path))) from None
    return load_yaml(text, str(path))
