"""Safe YAML loading that remembers the line and column of every key and item.

Bounds hold before anything is expanded: a spec file is a regular file of at most
:data:`MAX_SPEC_BYTES`, and its YAML tree, counted with every alias written out, has at most
:data:`MAX_YAML_NODES` nodes (a "billion laughs" file of 1 KB is refused, not expanded).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flowspec.errors import Problem, SpecError

MAX_SPEC_BYTES = 2 * 2 ** 20  # an expanded spec of the largest layer count is about 1.4 MB
MAX_YAML_NODES = 200_000  # keys, items and scalars, with aliases counted as often as they are used


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


class _TooManyNodes(Exception):
    def __init__(self, mark):
        self.mark = mark


class BoundedLoader(SpecLoader):
    """The spec loader, stopping once it has composed :data:`MAX_YAML_NODES` nodes (an alias
    counts once here; :func:`expanded_size` counts it as written out), so that a long flat list
    costs at most that many nodes' time."""

    def __init__(self, stream):
        super().__init__(stream)
        self.composed = 0

    def compose_node(self, parent, index):
        self.composed += 1
        if self.composed > MAX_YAML_NODES:
            raise _TooManyNodes(self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _to_python(loader: BoundedLoader, node: yaml.Node, path: tuple, source: SourceMap):
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


def expanded_size(node: yaml.Node, limit: int) -> int:
    """Number of nodes of ``node`` with every alias written out, counted on the composed graph
    (each distinct node once, memoised), so the count costs as little as the file; it stops at
    ``limit + 1``. A node that contains itself (``&a [*a]``) raises :class:`ValueError`."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ValueError("an alias refers to a node that contains it")
        open_nodes.add(key)
        total = 1
        if isinstance(current, yaml.MappingNode):
            children = [child for pair in current.value for child in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = current.value
        else:
            children = []
        for child in children:
            total = min(total + size(child), limit + 1)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(node)


def load_yaml(text: str, file: str = "<spec>", allow_empty: bool = False) -> tuple[object, SourceMap]:
    """Parse YAML text with the safe loader; return the data and its source map.

    Any YAML syntax problem becomes a :class:`SpecError` naming the file and line. An empty text is
    refused, or ``None`` with ``allow_empty``.
    """
    source = SourceMap(file)
    try:
        loader = BoundedLoader(text)
    except yaml.reader.ReaderError as error:  # a control character anywhere in the text
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise SpecError(Problem(f"invalid YAML: character #x{error.character:04x} is not allowed",
                                (), file, line, column)) from None
    try:
        node = loader.get_single_node()
        if node is None and allow_empty:
            return None, source
        if node is None:
            raise SpecError(Problem("the file is empty; a spec is a YAML mapping", (), file, 1, 1))
        try:
            nodes = expanded_size(node, MAX_YAML_NODES)
        except ValueError as error:
            raise SpecError(Problem(f"invalid YAML: {error}", (), file, *_mark(node))) from None
        if nodes > MAX_YAML_NODES:
            raise SpecError(Problem(f"the YAML expands to more than {MAX_YAML_NODES:,} nodes "
                                    "(aliases counted as written out)", (), file, *_mark(node),
                                    hint="a spec is small; is this a YAML alias bomb?"))
        source.marks[()] = _mark(node)
        data = _to_python(loader, node, (), source)
    except _TooManyNodes as error:
        raise SpecError(Problem(f"the YAML has more than {MAX_YAML_NODES:,} nodes", (), file, error.mark.line + 1,
                                error.mark.column + 1, hint="a spec is small; is this generated data?")) from None
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


def load_bounded_value(text: str, source: str, path: tuple = ()) -> object:
    """A YAML value given outside a file (``--set PATH=VALUE``), under a spec file's bounds: at most
    :data:`MAX_SPEC_BYTES` and :data:`MAX_YAML_NODES` nodes with aliases written out; problems
    name ``source`` and ``path``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError(Problem(f"the value is {_size(size)}; a value is at most {_size(MAX_SPEC_BYTES)}, "
                                f"as a spec file", path, source))
    try:
        value, _ = load_yaml(text, source, allow_empty=True)
    except SpecError as error:
        raise SpecError([Problem(p.message.replace("invalid YAML:", "cannot read the value as YAML:", 1), path, source,
                                 hint=p.hint) for p in error.problems]) from None
    return value


def _size(count: int) -> str:
    return f"{count / 2 ** 20:.1f} MiB" if count >= 2 ** 20 else f"{count:,} bytes"


def read_text_file(path: str | Path, limit: int = MAX_SPEC_BYTES, what: str = "spec") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, or a :class:`SpecError`
    naming the file: a FIFO, device or folder is refused without reading it (a FIFO opened
    non-blocking cannot hang, ``/dev/zero`` is never read)."""
    path = Path(path)

    def refuse(message: str, hint: str | None = None) -> SpecError:
        return SpecError(Problem(message, (), str(path), hint=hint))

    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise refuse(f"no such file: {path}") from None
    except OSError as error:
        raise refuse(f"cannot read the file: {error.strerror or error}") from None
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        if stat.S_ISDIR(mode):
            raise refuse(f"is a folder, not a {what} file")
        raise refuse(f"not a regular file (a FIFO, device or socket); a {what} is read from a file")
    with os.fdopen(handle, "rb") as stream:
        try:
            data = stream.read(limit + 1)
        except OSError as error:
            raise refuse(f"cannot read the file: {error.strerror or error}") from None
    if len(data) > limit:
        raise refuse(f"the file is larger than {_size(limit)}, the most a {what} file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise refuse(f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})",
                     hint="save the file as UTF-8") from None


def read_yaml(path: str | Path) -> tuple[object, SourceMap]:
    """Read a spec file within the bounds (:func:`read_text_file`) and parse it (:func:`load_yaml`)."""
    return load_yaml(read_text_file(path), str(path))
