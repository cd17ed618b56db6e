"""Dequantizers: turn discrete data ``x in {0..n-1}^D`` into continuous ``v = x + u``, ``u in [0,1)^D``,
with the log-density ``log q(u|x)`` of the noise (0 for uniform noise)."""

from flowspec.dequant.uniform import UniformDequantizer, build_dequantizer

__all__ = ["UniformDequantizer", "build_dequantizer"]
