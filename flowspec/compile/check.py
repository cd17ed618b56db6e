"""``flowspec check``: exactness of a spec's compiled model on a narrow copy, in float64.

The narrow copy keeps every layer and shrinks conditioner widths (and the image size, as far as
the levels allow), perturbs every parameter away from its identity init, then measures:
the round-trip error ``max|f^{-1}(f(x)) - x|`` and the log-det error
``max|logdet - log|det J_f(x)||`` with ``J_f`` the autograd Jacobian. A conditional spec is checked
at a fixed random condition per example (seeded labels or standard normal contexts), the same in
both directions. A table's typed columns (``input.columns``) are checked with the flow: the map is
``v -> columns -> flow`` at points ``v`` inside every column's domain (drawn as the columns'
inverse of standard normal values; a discrete column's ``v`` is its dequantized value).
"""

from __future__ import annotations

import math

import torch

from flowspec.core.check import CheckResult
from flowspec.errors import ShapeError
from flowspec.graph.build import build_graph
from flowspec.spec.models import Spec


def narrow_spec(spec: Spec, width: int = 8) -> Spec:
    """Same layers, conditioner widths at most ``width``, the smallest image the layers accept: a
    pass over the graph's layer nodes, each narrowed by its kind (``config.narrow``)."""
    nodes = build_graph(spec).layers
    layers = [node.config.narrow(width).model_copy(update={"name": node.name}) for node in nodes]
    shape = list(spec.input.shape)
    candidates = [shape]
    if len(shape) == 3:
        base = math.prod(node.config.spatial_factor for node in nodes)
        candidates = [[shape[0], h, h] for h in (base, 2 * base, 4 * base)
                      if h <= max(shape[1], shape[2])] + [shape]
    for candidate in candidates:
        narrow = spec.model_copy(update={
            "layers": layers, "levels": None, "steps": None, "step": None,
            "input": spec.input.model_copy(update={"shape": candidate})})
        try:
            build_graph(narrow)
            return narrow
        except ShapeError:
            continue
    raise AssertionError("unreachable: the spec itself builds")  # pragma: no cover


def check_spec(spec: Spec, width: int = 8, batch: int = 2, tolerance: float = 1e-6, seed: int = 0,
               guard=None) -> CheckResult:
    """``guard(graph, batch=, jacobian=)``, when given, sees the narrow copy's graph before a weight
    is allocated (the CLI refuses one that cannot fit in memory)."""
    from flowspec.compile import compile
    from flowspec.compile.condition import random_condition

    torch.manual_seed(seed)
    narrow = narrow_spec(spec, width)
    if guard is not None:
        graph = build_graph(narrow)
        size = math.prod(graph.input_shape)
        guard(graph, batch=max(size, 16), jacobian=size)
    model = compile(narrow).double()
    shape = model.input_shape
    condition = getattr(narrow, "condition", None)

    def fixed(n: int):
        c = random_condition(condition, n, torch.Generator().manual_seed(seed + 1))
        return c if c is None or c.dtype == torch.long else c.double()

    with torch.no_grad():
        model.train()
        model.log_prob(torch.randn(16, *shape, dtype=torch.float64), condition=fixed(16))  # actnorm's data init
        # 0.05 per parameter, shrunk as 1/sqrt(depth) past 16 layers: a random perturbation of
        # a deep stack (Glow's 3 x 32 steps) otherwise compounds into a map so ill-conditioned
        # that float64 itself cannot invert it, which says nothing about the layers' exactness.
        noise = 0.05 * min(1.0, (16 / max(len(model.layers), 1)) ** 0.5)
        for parameter in model.parameters():
            parameter.add_(noise * torch.randn_like(parameter))
    model.eval()
    columns = getattr(model, "columns", None)
    x = torch.randn(batch, *shape, dtype=torch.float64)
    c = fixed(batch)

    def encode(v, condition):
        if columns is None:
            return model(v, condition)
        y, column_logdet = columns(v)
        zs, logdet = model(y, condition)
        return zs, logdet + column_logdet

    def decode(zs, condition):
        v, logdet = model.inverse(zs, condition)
        if columns is None:
            return v, logdet
        v, column_logdet = columns.inverse(v)
        return v, logdet + column_logdet

    with torch.no_grad():
        if columns is not None:
            x = columns.inverse(x)[0]  # a point inside every column's domain
        zs, logdet = encode(x, c)
        x_back, inverse_logdet = decode(zs, c)

    def flat(v, i):
        zs, _ = encode(v.view(1, *shape), None if c is None else c[i:i + 1])
        return torch.cat([z.flatten() for z in zs])

    reference = torch.stack([
        torch.linalg.slogdet(torch.autograd.functional.jacobian(lambda v: flat(v, i), x[i].flatten(),
                                                                vectorize=True))[1]
        for i in range(batch)])
    return CheckResult(
        input_shape=tuple(shape),
        roundtrip_error=(x_back - x).abs().max().item(),
        logdet_error=((logdet - reference).abs() / (1 + reference.abs())).max().item(),
        inverse_logdet_error=(inverse_logdet + logdet).abs().max().item(),
        tolerance=tolerance,
        triangular_error=_triangular_error(model, build_graph(narrow), x[:1] if columns is None else None,
                                           None if c is None else c[:1]),
    )


def _triangular_error(model, graph, x, c) -> float | None:
    """The largest entry of an autoregressive layer's Jacobian outside the pattern its kind claims
    (:meth:`~flowspec.layers.base.LayerConfig.jacobian_pattern`), each layer at its own input on the
    way from ``x``; None when no layer claims one (or the model has typed columns)."""
    if x is None:
        return None
    worst = None
    h = model.features(c, 1, x)
    with torch.no_grad():
        for node, layer in zip(graph.layers, model.layers):
            pattern = node.config.jacobian_pattern(tuple(node.in_shape))
            if pattern is not None:
                jacobian = torch.autograd.functional.jacobian(
                    lambda v: layer(v.view(1, *node.in_shape), h)[0].flatten(), x.flatten())
                outside = jacobian[~torch.as_tensor(pattern)].abs()
                error = outside.max().item() if outside.numel() else 0.0
                worst = error if worst is None else max(worst, error)
            x, _, _ = layer.encode(x, h)
    return worst
