"""One row of the build table (``flowspec build``), whatever the family: a layer or part of the
compiled model with its shapes and parameter count."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuildRow:
    index: int
    name: str
    kind: str
    in_shape: tuple
    out_shape: tuple
    params: int
