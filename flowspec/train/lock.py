"""One training process per run folder: an exclusive advisory lock (``flock``) on ``RUN/.lock``,
held for the run's life.

The kernel releases a ``flock`` when its process dies, however it dies (``kill -9`` included), so a
stale lock file never blocks a later run; the PID written into the file names the holder for the
error message of a second run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from flowspec.errors import FlowSpecError
from flowspec.files import make_folder, open_descriptor

LOCK_NAME = ".lock"


class RunFolderInUse(FlowSpecError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """``with RunLock(folder):`` holds the folder's lock, or raises :class:`RunFolderInUse`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.descriptor: int | None = None

    def acquire(self) -> "RunLock":
        try:
            make_folder(self.folder)
            descriptor = open_descriptor(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as error:
            raise FlowSpecError(f"cannot use run folder {self.folder}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise RunFolderInUse(f"run folder {self.folder} in use by PID {holder} (its lock {self.path}); "
                                 f"wait for that run to end or choose another --out") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self.descriptor = descriptor
        return self

    def release(self) -> None:
        if self.descriptor is not None:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
