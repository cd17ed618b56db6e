"""Examples in and out of files, for the verbs that work on single images (encode, reconstruct,
interpolate, manipulate): image files and ``.npy`` / ``.npz`` arrays read as integer levels of a
spec's input, and grids of examples written as PNG.

Pixels ``p in 0..255`` and levels ``x in 0..n-1`` map as ``p = round(x * 255 / (n - 1))`` and
``x = round(p * (n - 1) / 255)``: a written image reads back to the same levels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowspec.data.arrays import checked_examples
from flowspec.errors import DataError
from flowspec.files import save_image

ARRAY_SUFFIXES = {".npy", ".npz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` an example of ``shape`` is drawn as: itself for 1 or 3 channels, a square
    grey image for a vector of square length; ``None`` when it cannot be drawn."""
    shape = tuple(shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        side = math.isqrt(shape[0])
        return (1, side, side)
    return None


def refuse_deep_pixels(image, path: Path) -> None:
    """A :class:`DataError` for an image of more than 8 bits a channel (16-bit PNG or TIFF, 32-bit
    integer or float): reading it as 8 bits would clip or truncate every pixel. Checked on the
    decoder's raw mode, before the pixels are read (Pillow opens a 16-bit RGB PNG as 8-bit RGB)."""
    raw = " ".join(str(tile[3] if isinstance(tile[3], str) else (tile[3] or ("",))[0]) for tile in image.tile)
    if image.mode.startswith(("I", "F")) or ";16" in raw or ";32" in raw:
        bits = "32" if image.mode in ("I", "F") or ";32" in raw else "16"
        raise DataError(f"{path}: {bits}-bit pixels ({image.mode}, raw {raw or image.mode}); flowspec reads 8-bit "
                        f"images (0..255 scaled to the spec's levels), and would clip these: convert it to 8 bits, "
                        f"or give a .npy of levels")


def read_image(path: Path, shape: tuple[int, ...], levels: int) -> Tensor:
    """One image file as an example ``shape`` of levels ``0..levels-1``."""
    from PIL import Image

    layout = image_layout(shape)
    if layout is None:
        raise DataError(f"{path}: the spec's input {list(shape)} is not an image; give a .npy/.npz instead")
    channels, height, width = layout
    try:
        with Image.open(path) as image:
            refuse_deep_pixels(image, path)
            image.load()
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            bands = [band for band in image.getbands() if band != "A"]
            if len(bands) != channels:
                raise DataError(f"{path}: {len(bands)} channel{'s' if len(bands) > 1 else ''} ({image.mode}), "
                                f"the spec's input has {channels}")
            if image.size != (width, height):
                raise DataError(f"{path}: {image.size[0]}x{image.size[1]} pixels, the spec's input is "
                                f"{width}x{height}")
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float64)
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: not a readable image ({type(error).__name__})") from None
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    values = np.rint(pixels * (levels - 1) / 255.0)
    return torch.from_numpy(values.astype(np.float32)).reshape(shape)


def read_array(path: Path, shape: tuple[int, ...]) -> Tensor:
    """A ``.npy`` or one-array ``.npz`` of examples ``(N, *shape)`` or a single example ``shape``
    (``(N, H, W)`` read as one channel, ``(N, H, W, C)`` moved to channels first)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:
        raise DataError(f"{path}: not a readable .npy/.npz ({type(error).__name__})") from None
    if not isinstance(loaded, np.ndarray):
        with loaded:
            keys = list(loaded.files)
            if "format" in keys:
                raise DataError(f"{path}: holds {loaded['format']}, not examples (decode it instead)")
            if len(keys) != 1:
                raise DataError(f"{path}: arrays {keys}; give a .npz with one array of examples")
            name, loaded = keys[0], loaded[keys[0]]
    else:
        name = "the array"
    array = checked_examples(np.asarray(loaded), str(path), name)
    shape = tuple(shape)
    if tuple(array.shape) == shape:
        array = array[None]
    elif array.ndim == 3 and len(shape) == 3 and shape[0] == 1 and tuple(array.shape[1:]) == shape[1:]:
        array = array[:, None]
    elif array.ndim == 4 and len(shape) == 3 and tuple(array.shape[1:]) == (shape[1], shape[2], shape[0]):
        array = array.transpose(0, 3, 1, 2)
    if tuple(array.shape[1:]) != shape:
        raise DataError(f"{path}: array of shape {list(array.shape)}, expected (N, {', '.join(map(str, shape))}) "
                        f"for the spec's input.shape {list(shape)}")
    return torch.from_numpy(np.array(array, dtype=np.float32))


def read_examples(paths: list[Path], shape: tuple[int, ...], levels: int) -> Tensor:
    """Image files and arrays, in order, as one batch ``(N, *shape)``."""
    parts = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in ARRAY_SUFFIXES:
            parts.append(read_array(path, shape))
        elif suffix in IMAGE_SUFFIXES:
            parts.append(read_image(path, shape, levels)[None])
        else:
            raise DataError(f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy/.npz")
    if not parts:
        raise DataError("no inputs: give image files, a .npy/.npz, or --data with --index")
    return torch.cat(parts)


def to_pixels(x: Tensor, levels: int) -> np.ndarray:
    """Levels ``(N, *shape)`` -> uint8 images ``(N, C, H, W)``."""
    layout = image_layout(tuple(x.shape[1:]))
    if layout is None:
        raise DataError(f"examples of shape {list(x.shape[1:])} cannot be drawn as images; write a .npy instead")
    x = x.detach().cpu().double().reshape(-1, *layout).clamp(0, levels - 1)
    return (x * (255.0 / (levels - 1))).round().to(torch.uint8).numpy()


def grid(images: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """uint8 ``(N, C, H, W)``, ``N <= rows * cols``, in row order -> one picture ``(H', W')`` or
    ``(H', W', 3)``, each image upscaled to at least 32 px, grey gaps of ``pad`` px (and grey
    cells after the last image)."""
    n, c, h, w = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit {rows} x {cols}")
    scale = max(1, 32 // max(h, w))
    images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    picture = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 128, dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        picture[:, top:top + h, left:left + w] = images[i]
    return picture[0] if c == 1 else picture.transpose(1, 2, 0)


def save_grid(x: Tensor, levels: int, rows: int, cols: int, path: Path) -> Path:
    """Write examples ``x`` (levels, row order) as a ``rows x cols`` PNG grid."""
    return save_image(grid(to_pixels(x, levels), rows, cols), path)
