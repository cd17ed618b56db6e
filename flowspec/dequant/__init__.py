"""Dequantizers: turn discrete data ``x in {0..n-1}^D`` into continuous ``v = x + u``, ``u in [0,1)^D``,
with the log-density ``log q(u|x)`` of the noise (0 for uniform noise), and the map of ``v`` into the
model's space (scale, or RealNVP's logit) with its log-det. See ``docs/dequantization.md``."""

from flowspec.dequant.config import (ContextConfig, Dequantization, LogitPreprocess, Preprocess,
                                     UniformDequantization, VariationalDequantization)
from flowspec.dequant.preprocess import ToModelSpace
from flowspec.dequant.build import build_dequantizer
from flowspec.dequant.uniform import UniformDequantizer

__all__ = ["ContextConfig", "Dequantization", "LogitPreprocess", "Preprocess", "ToModelSpace",
           "UniformDequantization", "UniformDequantizer", "VariationalDequantization", "build_dequantizer"]
