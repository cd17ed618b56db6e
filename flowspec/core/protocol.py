"""The one model protocol every family implements (flow, VAE, ...), and the shim that keeps the
pre-protocol positional calls working for one release.

Every option after the data is keyword-only and means the same on every family::

    model.log_prob(x, condition=c)                   # log p(x | c) in the model's space (a bound for a VAE)
    model.elbo(x, condition=c)                       # log P(x | c) >= E_q[log p(x, u) - log q(u | x)], nats
    model.bits_per_dim(x, condition=c, k=1)          # -elbo / (D log 2); k > 1: the importance-weighted bound
    model.loss_per_dim(x, condition=c, k=1)          # the training figure in model.unit (bits/dim or nats/dim)
    model.sample(n, condition=c, temperature=1.0, generator=g)   # then model.to_data_space(...)
    model.encode(x) / model.decode(latents)          # flowspec.core.latents.Latents
    model.initialize(batch, condition=c)             # data-dependent init from one batch

An unconditional model takes ``condition=None`` (the default) and refuses anything else with a
:class:`~flowspec.errors.ConditionError`, so generic code (the runner, evaluation, sample grids,
the latent tools, the CLI) passes ``condition=`` without asking whether a model has one.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from flowspec.errors import ConditionError


@runtime_checkable
class DensityModel(Protocol):
    """A compiled model of any family (:class:`~flowspec.compile.model.FlowModel`,
    :class:`~flowspec.vae.model.VAEModel`, ...): an ``nn.Module`` with these members."""

    spec: Any
    input_shape: tuple
    levels: int
    #: what :meth:`loss_per_dim` measures: "bits/dim" (discrete data) or "nats/dim" (continuous)
    unit: str

    def log_prob(self, x: Tensor, *, condition=None) -> Tensor: ...

    def elbo(self, x: Tensor, *, condition=None) -> Tensor: ...

    def bits_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor: ...

    def loss_per_dim(self, x: Tensor, *, condition=None, k: int = 1) -> Tensor: ...

    def sample(self, n: int, *, condition=None, temperature: float = 1.0, generator=None) -> Tensor: ...

    def to_data_space(self, y: Tensor) -> Tensor: ...

    def encode(self, x: Tensor, **options): ...

    def decode(self, latents, **options) -> Tensor: ...

    def initialize(self, x: Tensor, *, condition=None) -> None: ...

    @property
    def initialized(self) -> bool: ...


def refuse_condition(condition) -> None:
    """The check of an unconditional family: a :class:`ConditionError` unless ``condition`` is None."""
    if condition is not None:
        raise ConditionError("this model is unconditional (its spec has no condition:); call it without a condition")


def legacy_positional(*names: str, keep: int = 0, renamed: dict[str, str] | None = None):
    """Accept a method's pre-protocol call forms for one release, with a :class:`DeprecationWarning`.

    After the first argument, the method once took ``names`` positionally; the first ``keep`` of
    them stay positional without a warning, the rest become keywords. ``renamed`` maps old keyword
    names to new ones (``{"c": "condition"}``). The new call form costs one ``if`` per call.
    """
    renamed = renamed or {}

    def wrap(method):
        where = method.__qualname__

        @functools.wraps(method)
        def call(self, first, *args, **kwargs):
            if len(args) > keep or any(key in kwargs for key in renamed):  # (dynamo traces this)
                args, kwargs = _translate(where, names, keep, renamed, args, kwargs)
            return method(self, first, *args, **kwargs)

        return call

    return wrap


def _translate(where: str, names, keep: int, renamed: dict, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if len(args) > len(names):
        raise TypeError(f"{where}() takes at most {len(names) + 1} positional arguments ({len(args) + 1} given)")
    old = [f"positional {name}" for name in names[keep:len(args)]] + [f"{key}=" for key in kwargs if key in renamed]
    new = [f"{name}=" for name in names[keep:len(args)]] + [f"{renamed[key]}=" for key in kwargs if key in renamed]
    for name, value in zip(names[keep:], args[keep:]):
        if name in kwargs:
            raise TypeError(f"{where}() got multiple values for argument {name!r}")
        kwargs[name] = value
    for key in [key for key in kwargs if key in renamed]:
        target = renamed[key]
        if target in kwargs:
            raise TypeError(f"{where}() got both {key!r} and {target!r}")
        kwargs[target] = kwargs.pop(key)
    warnings.warn(f"{where}: {', '.join(old)} {'is' if len(old) == 1 else 'are'} deprecated; pass {', '.join(new)} as keyword-only "
                  f"options (the old form goes away in the next release)", DeprecationWarning, stacklevel=3)
    return args[:keep], kwargs
