"""Dequantizers: turn discrete data ``x in {0..n-1}^D`` into continuous ``v = x + u``, ``u in [0,1)^D``,
with the log-density ``log q(u|x)`` of the noise (0 for uniform noise), and the map of ``v`` into the
model's space (scale, or RealNVP's logit) with its log-det. See ``docs/dequantization.md``."""

from flowspec.dequant.config import (ContextConfig, Dequantization, LogitPreprocess, Preprocess,
                                     UniformDequantization, VariationalDequantization)

#: the torch modules, imported on first use (the spec and graph layers need the configs only)
_MODULES = {"ToModelSpace": "flowspec.dequant.preprocess", "build_dequantizer": "flowspec.dequant.build",
            "UniformDequantizer": "flowspec.dequant.uniform"}

__all__ = ["ContextConfig", "Dequantization", "LogitPreprocess", "Preprocess", "ToModelSpace",
           "UniformDequantization", "UniformDequantizer", "VariationalDequantization", "build_dequantizer"]


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module 'flowspec.dequant' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_MODULES[name]), name)
