"""`FileLock`: serializes the registry's writers across threads *and* processes (several
uvicorn workers share one data dir), which an in-memory lock alone cannot. Files themselves
are written with `pitahaya.client_runtime.files.write_atomic`.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType


#: Mode of the files the registry serves (metadata, blobs): public bytes that a proxy or CDN
#: on the host may read; private keys are written with `pitahaya.publisher.keys.KEY_FILE_MODE`.
PUBLIC_FILE_MODE = 0o644


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
