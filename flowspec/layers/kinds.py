"""Registries of kinds, open for the life of the process.

A :class:`Registry` maps a kind's name (its config's ``kind: Literal["name"]`` default) to its config
model. Built-in kinds register when their package imports them (discovery: a new kind is one new
file); third-party packages register through the ``flowspec.kinds`` entry point group, loaded on the
first lookup or validation, never at ``import flowspec``. A kind may also register at any time from
user code.

A spec field that holds a kind is ``kind_union(registry, what)``: a pydantic union discriminated by
``kind`` over whatever the registry holds *when the schema is built*. When a kind registers after a
union was built into some model, every model that reaches that registry (directly, or through a
nested model or another registry's kinds) is rebuilt, innermost first, so validation, errors and
the JSON schema know the new kind at once.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
import warnings
from collections.abc import MutableMapping
from typing import Annotated, Any, Iterator, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Tag, model_serializer

ENTRY_POINT_GROUP = "flowspec.kinds"

#: the registries behind each :func:`kind_union`, by the name of what they hold ("conditioner", ...);
#: the loader names the known kinds of the field an unknown kind was written in
UNIONS: dict[str, "Registry"] = {}

_plugins = {"state": "unloaded"}  # unloaded -> loading -> loaded


class Registry(MutableMapping):
    """Kind name -> config model. Reading it first loads the ``flowspec.kinds`` entry points."""

    def __init__(self, what: str):
        self.what = what
        self._kinds: dict[str, type[BaseModel]] = {}
        self.built = False  # a union over this registry is part of some model's schema

    def register(self, config: type[BaseModel]) -> type[BaseModel]:
        """Add ``config`` under its ``kind`` default; models that hold this registry's union are
        rebuilt if they were built already."""
        kind = config.model_fields["kind"].default
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"{config.__name__} needs a field kind: Literal['name'] = 'name' to register as a {self.what}")
        self._kinds[kind] = config
        if self.built:
            rebuild_models_reaching({self})
        return config

    def __getitem__(self, kind: str) -> type[BaseModel]:
        load_plugins()
        return self._kinds[kind]

    def __setitem__(self, kind: str, config: type[BaseModel]) -> None:
        self._kinds[kind] = config
        if self.built:
            rebuild_models_reaching({self})

    def __delitem__(self, kind: str) -> None:
        del self._kinds[kind]
        if self.built:
            rebuild_models_reaching({self})

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(list(self._kinds))

    def __len__(self) -> int:
        load_plugins()
        return len(self._kinds)

    def __contains__(self, kind: object) -> bool:
        load_plugins()
        return kind in self._kinds

    __hash__ = object.__hash__  # a registry is itself (a node of the rebuild graph), not its contents

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {sorted(self._kinds)})"

    def members(self) -> dict[str, type[BaseModel]]:
        """The kinds registered now, without loading entry points (for schema building)."""
        return dict(self._kinds)


class BareKind(BaseModel):
    """Base of kinds usually written as a bare name (``prior: learned``): a config with no field
    but ``kind`` set dumps back to the bare name, so stored and expanded specs read as written.
    Subclasses declare ``kind``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every number finite

    def __str__(self) -> str:
        return self.kind

    @model_serializer(mode="wrap")
    def _bare_when_plain(self, handler):
        data = handler(self)
        return self.kind if isinstance(data, dict) and set(data) == {"kind"} else data


def import_all(package_name: str, package_path) -> None:
    """Import every module of a package (its kinds register themselves on import)."""
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")


def load_plugins() -> None:
    """Import the ``flowspec.kinds`` entry points once (each names a module, whose import registers
    its kinds, or a callable, called with no arguments). A plugin that fails to load is reported in
    one warning line and skipped, so one broken package does not stop every spec."""
    if _plugins["state"] != "unloaded":
        return
    _plugins["state"] = "loading"
    try:
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = entry.load()
                if callable(loaded) and not isinstance(loaded, type):
                    loaded()
            except Exception as error:  # a third-party package's failure: warn, keep going
                warnings.warn(f"flowspec: the {ENTRY_POINT_GROUP} entry point {entry.name!r} ({entry.value}) "
                              f"failed to load: {type(error).__name__}: {error}", stacklevel=2)
    finally:
        _plugins["state"] = "loaded"


def reload_plugins() -> None:
    """Load the entry points again (after installing a package into a running process)."""
    _plugins["state"] = "unloaded"
    load_plugins()


def _shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind")
    return getattr(value, "kind", None)


class KindUnion:
    """Pydantic marker: the field holds one of ``registry``'s kinds (plus ``extra`` tagged members),
    a union discriminated by ``kind`` built from the registry's contents at schema-build time."""

    def __init__(self, registry: Registry, what: str, extra: typing.Callable[[], dict] | None = None,
                 shorthand: bool = True):
        self.registry, self.what, self.extra, self.shorthand = registry, what, extra, shorthand

    def members(self) -> dict[str, type[BaseModel]]:
        """The registry's kinds sorted by name (so the schema does not depend on import order),
        then the extra members."""
        return {**dict(sorted(self.registry.members().items())), **(self.extra() if self.extra else {})}

    def union_type(self):
        tagged = tuple(Annotated[config, Tag(tag)] for tag, config in self.members().items())
        union = Annotated[Union[tagged], Discriminator(self._tag, custom_error_type="missing_kind",
                                                       custom_error_message=f"each {self.what} needs a kind")]
        return Annotated[union, BeforeValidator(_shorthand)] if self.shorthand else union

    def _tag(self, value: Any) -> str | None:
        return _kind_of(value)

    def __get_pydantic_core_schema__(self, source, handler):
        self.registry.built = True
        return handler.generate_schema(self.union_type())


def kind_union(kinds: Registry, what: str, shorthand: bool = True):
    """A field type: one of the kinds ``kinds`` holds, discriminated by ``kind``; a bare string
    ``"affine"`` is short for ``{kind: affine}`` (unless ``shorthand`` is false). Open: a kind
    registered later is accepted (the models holding the union are rebuilt)."""
    UNIONS[what] = kinds
    return Annotated[Any, KindUnion(kinds, what, shorthand=shorthand)]


def kind_markers(annotation, metadata=()) -> list[KindUnion]:
    """The :class:`KindUnion` markers in a field's annotation (and its pydantic ``metadata``)."""
    found = [m for m in metadata if isinstance(m, KindUnion)]
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        args = typing.get_args(annotation)
        found += [m for m in args[1:] if isinstance(m, KindUnion)]
        found += kind_markers(args[0])
    elif origin is not None:
        for arg in typing.get_args(annotation):
            found += kind_markers(arg)
    return found


def field_models(annotation, metadata=()) -> list[type[BaseModel]]:
    """The model types a field can hold: through Optional, list, Annotated, unions and kind unions."""
    found: list[type[BaseModel]] = []
    for marker in kind_markers(annotation, metadata):
        found += list(marker.members().values())
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        found += field_models(typing.get_args(annotation)[0])
    elif origin is not None:
        for arg in typing.get_args(annotation):
            found += field_models(arg)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    return list(dict.fromkeys(found))


def _all_models() -> list[type[BaseModel]]:
    seen, stack = [], list(BaseModel.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return [m for m in seen if getattr(m, "__pydantic_complete__", False)]


def rebuild_models_reaching(changed: set[Registry]) -> None:
    """Rebuild every built model whose schema reaches a registry in ``changed``, dependencies
    first (a coupling before the spec that lists couplings)."""
    import networkx as nx

    graph = nx.DiGraph()
    for model in _all_models():
        if not model.__module__.startswith("pydantic"):
            graph.add_node(model)
            for field in model.model_fields.values():
                for marker in kind_markers(field.annotation, field.metadata):
                    graph.add_edge(model, marker.registry)
                    for member in marker.members().values():
                        graph.add_edge(marker.registry, member)
                for target in field_models(field.annotation, field.metadata):
                    graph.add_edge(model, target)
    reaching = set()
    for registry in changed:
        if registry in graph:
            reaching |= nx.ancestors(graph, registry)
    reaching = {node for node in reaching if isinstance(node, type)}
    condensed = nx.condensation(graph.subgraph(reaching))
    for component in reversed(list(nx.topological_sort(condensed))):
        members = condensed.nodes[component]["members"]
        for _ in range(1 if len(members) == 1 else 2):  # a cycle of models: twice, so each sees the others
            for model in members:
                model.model_rebuild(force=True)
