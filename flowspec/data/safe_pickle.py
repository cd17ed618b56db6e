"""A pickle reader that rebuilds plain data only, for files from untrusted mirrors (CIFAR-10 batches).

Unpickling calls whatever global a file names, so a crafted file runs code. :class:`PlainDataUnpickler`
resolves only the few globals that numpy arrays need (the array reconstructor, ``ndarray`` as its
argument only, ``dtype``, the scalar constructor, the protocol-5 buffer reader, and ``_codecs.encode``
for latin-1 bytes as Python 3 writes them at protocol 2); dicts, lists, tuples, strings, bytes and
numbers need no global. Every array's bytes come from the file, so no array outgrows it.
Anything else is refused before it is called, with :class:`DataError` naming the file and the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from flowspec.errors import DataError

# numpy's own reconstructors, taken from what numpy pickles (their module moved between versions).
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it; any other codec is refused."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: an argument of the reconstructor, never called itself
    (calling ``ndarray(shape)`` would allocate any size the file asks for)."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


ARRAY_TYPE = _ArrayType()


def _reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` as numpy pickles use it: an empty ndarray whose
    ``__setstate__`` then fills in the shape and the bytes read from the file."""
    if subtype is not ARRAY_TYPE or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"refused _reconstruct({subtype!r}, {shape!r}) (numpy writes (ndarray, (0,)))")
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


def _allowed() -> dict[tuple[str, str], object]:
    table = {("numpy", "ndarray"): ARRAY_TYPE, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_bytes}
    for module in _NUMPY_MODULES:
        table[(module, "_reconstruct")] = _reconstruct
        table[(module, "scalar")] = _SCALAR
        table[(module, "_frombuffer")] = _FROMBUFFER
    return table


ALLOWED_GLOBALS = _allowed()


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles containers, strings, bytes, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def load_plain_pickle(path: str | Path, what: str = "pickle") -> object:
    """Read ``path`` with :class:`PlainDataUnpickler` (``encoding='bytes'``, as Python 2 pickles need)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        obj = PlainDataUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as error:
        text = str(error)
        if text.startswith("refused"):
            raise DataError(f"{path}: {text}; a {what} holds only numpy arrays, lists, dicts, bytes and "
                            f"numbers, so this file was not loaded (it may run code)") from None
        raise DataError(f"{path}: not a {what} ({text})") from None
    except Exception as error:  # truncated or garbled streams raise many kinds of error
        raise DataError(f"{path}: not a {what} ({type(error).__name__}: {error})") from None
    return obj
