"""Config field types that several kinds share."""

from __future__ import annotations

from pydantic import AfterValidator


def _odd(kernel: int) -> int:
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd (a centre tap, so that padding keeps the map's H x W), got {kernel} "
                         f"(use {kernel - 1} or {kernel + 1})")
    return kernel


#: ``kernel: Annotated[int, Field(ge=1, le=7), ODD_KERNEL]``: a convolution's size must be odd, so
#: that ``kernel // 2`` padding keeps H x W and a centre tap exists
ODD_KERNEL = AfterValidator(_odd)
