"""Discrete data as the models take it: ``x in {0, ..., n-1}^D``.

Integer tensors of any dtype (``torch.long``, ``uint8`` from a loader) and floats of another
precision (``load_digits().images`` is float64) are cast to the model's float dtype; every value must lie in ``[0, n)``. Imported by the compiled
models, so it depends on torch and nothing else of flowspec.
"""

from __future__ import annotations

import torch
from torch import Tensor


def as_levels(x: Tensor, levels: int, dtype: torch.dtype) -> Tensor:
    """``x`` as a float tensor of discrete levels in ``[0, levels)``; a :class:`ValueError` naming
    the expected range otherwise. Integer, bool and float tensors of another precision (numpy's
    float64) are cast to ``dtype``, which the levels survive exactly. Under ``torch.compile`` the
    range is not checked (a data-dependent branch would break the graph)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of discrete data, got {type(x).__name__}")
    if x.is_complex():
        raise ValueError(f"expected real discrete data in [0, {levels}), got a {x.dtype} tensor")
    x = x.to(dtype)
    if torch.compiler.is_compiling():  # a compiled step has no data-dependent branch: its loaders checked the data
        return x
    inside = (x >= 0) & (x < levels)  # NaN is outside too
    if not bool(inside.all()):
        outside = x[~inside]
        raise ValueError(f"expected discrete data in [0, {levels}) (the spec's input.levels: integers "
                         f"0..{levels - 1}), got {outside.numel()} value(s) outside, e.g. {outside[0].item():g}")
    return x
