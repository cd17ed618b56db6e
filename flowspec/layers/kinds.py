"""Registries of kinds, filled by discovery: importing a package imports every module in it, so a
new layer, transform or conditioner kind is one new file that registers itself."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Tag


#: the registries behind each :func:`kind_union`, by the name of what they hold ("conditioner", ...);
#: the loader names the known kinds of the field an unknown kind was written in
UNIONS: dict[str, dict[str, type[BaseModel]]] = {}


def import_all(package_name: str, package_path) -> None:
    """Import every module of a package (its kinds register themselves on import)."""
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")


def _shorthand(value: Any) -> Any:
    return {"kind": value} if isinstance(value, str) else value


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind")
    return getattr(value, "kind", None)


def kind_union(kinds: dict[str, type[BaseModel]], what: str):
    """A pydantic union discriminated by ``kind`` over the registered ``kinds``; a bare string
    ``"affine"`` is short for ``{kind: affine}``."""
    UNIONS[what] = kinds
    members = tuple(Annotated[config, Tag(kind)] for kind, config in sorted(kinds.items()))
    return Annotated[
        Annotated[Union[members], Discriminator(_kind_of, custom_error_type="missing_kind",
                                                custom_error_message=f"each {what} needs a kind")],
        BeforeValidator(_shorthand),
    ]
