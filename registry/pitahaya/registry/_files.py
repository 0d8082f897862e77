"""Filesystem primitives shared by the blob store and the TUF repository.

`atomic_write` is the only way registry code writes a file: readers (and a crash) see
either the old file or the complete new one, never a half-written file. `FileLock`
serializes writers across threads *and* processes (several uvicorn workers share one data
dir), which an in-memory lock alone cannot.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from pathlib import Path
from types import TracebackType


#: Suffix of `atomic_write`'s temp files (named ``.<target name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``.

    A process killed before the rename leaves the temp file behind (`is_temp_file`);
    ``pitahaya registry gc`` removes those of the blob store.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is named like a temp file of `atomic_write`."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Persist the rename itself, so a power cut cannot resurrect the old file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileLock:
    """An exclusive lock held by one thread of one process at a time (``flock`` + an RLock).

    Use as a context manager. Reentrant within a thread, so a service can hold the lock
    around a whole publish while the TUF repository takes it again for each write.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self._mutex.acquire()
        if self._depth == 0:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            except BaseException:
                self._mutex.release()
                raise
        self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None
        finally:
            self._mutex.release()
