"""Every file flowspec creates or truncates goes through here, and none follows a symbolic link.

A run folder, a build folder or an output path may hold a link planted by someone else (``RUN/.lock
-> ~/.bashrc``): opening it for writing would truncate the link's target outside the folder, and a
dangling link would create a file elsewhere. :func:`open_for_writing` opens with ``O_NOFOLLOW``
(the kernel refuses a link as the last part of the path), :func:`make_folder` refuses a folder that
is a link, and :func:`replace_atomically` writes a fresh temporary file (``O_EXCL``) and renames it
over the path (a rename replaces a link, never writes through it), after refusing a link there too,
so that every writer answers a link with the same one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from flowspec.errors import FlowSpecError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class LinkRefused(FlowSpecError):
    """flowspec was asked to write through a symbolic link."""


def _refused(path: Path) -> LinkRefused:
    return LinkRefused(f"{path}: is a symbolic link; flowspec does not write through links "
                       f"(remove the link or choose another path)")


def refuse_link(path: str | Path) -> Path:
    """``path`` if it is not a symbolic link (``lstat``), else :class:`LinkRefused`."""
    path = Path(path)
    if path.is_symlink():
        raise _refused(path)
    return path


def make_folder(folder: str | Path) -> Path:
    """``mkdir -p folder``, refusing a ``folder`` that is a symbolic link."""
    folder = refuse_link(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return refuse_link(folder)


def open_descriptor(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_CLOEXEC)``; a link is :class:`LinkRefused`."""
    path = Path(path)
    try:
        return os.open(path, flags | NOFOLLOW | CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno == errno.EEXIST and path.is_symlink()):
            raise _refused(path) from None
        raise


def open_for_writing(path: str | Path, mode: str = "wb", encoding: str | None = None,
                     make_parent: bool = True) -> IO:
    """Open ``path`` to write (``"w"``/``"wb"``: created or truncated; ``"a"``/``"ab"``: appended),
    never through a symbolic link; its parent folder is made when missing (with ``make_parent``).
    The parent may itself be a link (``/tmp`` is one on macOS): the folders flowspec makes inside
    a run or build folder are checked where they are named (:func:`make_folder`, the run's files).
    Use it as ``with``."""
    path = Path(path)
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    descriptor = open_descriptor(path, flags)
    text = "b" not in mode
    return os.fdopen(descriptor, mode, encoding=(encoding or "utf-8") if text else None)


@contextlib.contextmanager
def _named(path: str | Path) -> Iterator[None]:
    """An :class:`OSError` of a write (a full disk) that names no file names ``path``."""
    try:
        yield
    except OSError as error:
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror or os.strerror(error.errno), str(path)) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with _named(path), open_for_writing(path, "wb") as stream:
        stream.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, make_parent: bool = True) -> Path:
    with _named(path), open_for_writing(path, "w", make_parent=make_parent) as stream:
        stream.write(text)
    return Path(path)


@contextlib.contextmanager
def replace_atomically(path: str | Path) -> Iterator[IO]:
    """A binary stream to a new temporary file beside ``path``, renamed over ``path`` once written
    and synced (a reader never sees half a file; a crash leaves the old one)."""
    path = refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        refuse_link(path)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_array(path: str | Path, array) -> Path:
    """``numpy.save`` of ``array`` to ``path`` exactly (no ``.npy`` appended), never through a link."""
    import numpy as np

    with open_for_writing(path) as stream:
        np.save(stream, array)
    return Path(path)


def image_format(path: str | Path) -> str:
    """Pillow's format name for ``path``'s suffix (``.png`` -> ``PNG``); a :class:`FlowSpecError`
    for a suffix that names no image format (``.txt``, none at all)."""
    from PIL import Image

    path = Path(path)
    found = Image.registered_extensions().get(path.suffix.lower())
    if found is None or found not in Image.SAVE:
        raise FlowSpecError(f"{path}: cannot tell an image format from {path.suffix or 'no suffix'!r}; "
                            f"write a .png (or .jpg, .bmp, .tif, .webp)")
    return found


def save_image(pixels, path: str | Path) -> Path:
    """Write an ``(H, W)`` or ``(H, W, 3)`` uint8 array as an image, its format from the suffix,
    never through a symbolic link."""
    from PIL import Image

    image_format_name = image_format(path)
    with open_for_writing(path) as stream:
        Image.fromarray(pixels).save(stream, format=image_format_name)
    return Path(path)


def save_program(program, path: str | Path) -> Path:
    """``torch.export.save`` of an exported ``program`` to ``path``, never through a symbolic link."""
    import torch

    with open_for_writing(path) as stream:
        torch.export.save(program, stream)
    return Path(path)


def save_onnx(program, path: str | Path) -> Path:
    """``ONNXProgram.save`` to ``path``, never through a symbolic link: the exporter writes into a
    private temporary folder, and each file it made (the model, and external weights for a large
    one) is renamed into place beside ``path`` by :func:`replace_atomically`."""
    path = refuse_link(path)
    with tempfile.TemporaryDirectory() as private:
        program.save(str(Path(private) / path.name))
        for made in sorted(Path(private).iterdir()):
            with replace_atomically(path.parent / made.name) as stream:
                stream.write(made.read_bytes())
    return path
