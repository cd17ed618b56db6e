r"""Typed columns of a table, one file per type; importing this package registers them all
(:data:`COLUMN_KINDS`) and builds the spec's :data:`Column` union.

:class:`TypedColumns` is the map of a whole row: ``x`` (data) ``-> v`` (discrete columns
dequantized, ``v = x + u``) ``-> y`` (each column's bijection to the real line), with
``log|det dy/dv| = sum`` of the per-column log-dets. The flow models ``y``; the table's
log-likelihood is ``log p_Y(y) + log|det dy/dv|``, exact for continuous columns and the uniform
dequantization bound (``E_u``) for discrete ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowspec.columns.base import COLUMN_KINDS, ColumnConfig, ColumnTransform, register_column
from flowspec.layers.kinds import import_all, kind_union

import_all(__name__, __path__)

Column = kind_union(COLUMN_KINDS, "column", shorthand=False)


def column_types(columns, features: int) -> list[ColumnConfig]:
    """The type of each of ``features`` columns (``real`` where no entry names it)."""
    from flowspec.columns.real import RealColumn

    out: list[ColumnConfig] = [RealColumn(at=i) for i in range(features)]
    for entry in columns or ():
        for i in entry.columns:
            out[i] = entry
    return out


class TypedColumns(nn.Module):
    """``x -> v -> (y, log|det dy/dv|)`` per row (see the module); shape ``(batch, D)``."""

    def __init__(self, columns, features: int):
        super().__init__()
        self.features = features
        entries = [entry for entry in columns if not entry.identity]
        self.maps = nn.ModuleList(entry.build(len(entry.columns)) for entry in entries)
        for i, entry in enumerate(entries):
            self.register_buffer(f"index_{i}", torch.tensor(list(entry.columns)), persistent=False)
        discrete = torch.zeros(features, dtype=torch.bool)
        for entry in entries:
            if entry.discrete:
                discrete[list(entry.columns)] = True
        self.register_buffer("discrete", discrete, persistent=False)
        #: some column is discrete (fixed by the spec; a Python bool, so no tensor is read per call)
        self.any_discrete = bool(discrete.any())

    @property
    def dequantizes(self) -> bool:
        """Some column is discrete: the likelihood is a bound, and tightens with importance weighting."""
        return self.any_discrete

    def _indices(self) -> list[Tensor]:
        return [getattr(self, f"index_{i}") for i in range(len(self.maps))]

    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``v = x + u`` on the discrete columns, ``u ~ U[0, 1)``; other columns unchanged."""
        if not self.dequantizes:
            return x
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + u * self.discrete.to(x.dtype)

    def _map(self, values: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        out = values.clone()
        logdet = values.new_zeros(values.shape[0])
        for index, column_map in zip(self._indices(), self.maps):
            mapped, entry_logdet = (column_map.inverse if inverse else column_map)(values[:, index])
            out[:, index] = mapped
            logdet = logdet + entry_logdet.sum(1)
        return out, logdet

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(v, inverse=False)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(y, inverse=True)

    def to_data(self, v: Tensor) -> Tensor:
        """Each column's values back in its domain: discrete columns rounded down to their integer
        (the inverse of :meth:`dequantize`)."""
        out = v.clone()
        for index, column_map in zip(self._indices(), self.maps):
            out[:, index] = column_map.to_data(v[:, index])
        return out


__all__ = ["COLUMN_KINDS", "Column", "ColumnConfig", "ColumnTransform", "TypedColumns", "column_types",
           "register_column"]
