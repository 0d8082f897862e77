"""The publish lock: one writer of the signed metadata at a time, across threads, processes and hosts.

Every publish reads the current TUF versions, signs the next ones and writes them; two at once
would fork the version chain. `FileLock` serializes the workers of one host sharing a data dir
(``flock``); `AdvisoryLock` serializes registry replicas on several hosts sharing one
PostgreSQL database (a session-level ``pg_advisory_lock``, which PostgreSQL releases itself when
the holder's connection dies, so a killed replica never leaves the lock held). `publish_lock_for`
picks the one that covers everyone who can write the same metadata.

Both are reentrant within a thread, so a service can hold the lock around a whole publish while
the TUF repository takes it again for each write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import fcntl
import os
import threading
import zlib
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, Engine, text

#: The advisory lock key of the publish lock (PostgreSQL's locks are keyed by one bigint).
ADVISORY_LOCK_KEY = zlib.crc32(b"pitahaya.registry.publish")


class PublishLock(ABC):
    """A lock held by one thread of one process at a time; reentrant within that thread.

    Subclasses say how the first entry takes the lock across processes (`_acquire`) and how
    the last exit gives it back (`_release`). Use as a context manager.
    """

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._depth = 0

    def __enter__(self) -> PublishLock:
        self._mutex.acquire()
        if self._depth == 0:
            try:
                self._acquire()
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
            if self._depth == 0:
                self._release()
        finally:
            self._mutex.release()

    @abstractmethod
    def _acquire(self) -> None:
        """Take the lock across processes (blocks until it is free)."""

    @abstractmethod
    def _release(self) -> None:
        """Give the lock back across processes."""


class FileLock(PublishLock):
    """``flock`` on ``path``: covers the processes of one host (several uvicorn workers)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._fd: int | None = None

    def _acquire(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class AdvisoryLock(PublishLock):
    """A PostgreSQL session-level advisory lock on a connection held for the lock's lifetime.

    Covers every replica connected to the same database. A replica killed while holding it
    loses its connection, and PostgreSQL drops the lock with the session.

    Args:
        engine: A PostgreSQL engine (the registry's own).
        key: The lock's key; every registry of one database must use the same.
    """

    def __init__(self, engine: Engine, key: int = ADVISORY_LOCK_KEY) -> None:
        super().__init__()
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None

    def _acquire(self) -> None:
        connection = self._engine.connect()
        try:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
            connection.commit()
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _release(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            connection.commit()
        finally:
            connection.close()  # a broken connection took the lock with it


def publish_lock_for(engine: Engine | None, lock_file: Path) -> PublishLock:
    """The lock covering every writer of the same metadata: an advisory lock when the metadata
    lives in a PostgreSQL database (replicas may run on several hosts), else a file lock (SQLite
    and the files are on this host)."""
    if engine is not None and engine.dialect.name == "postgresql":
        return AdvisoryLock(engine)
    return FileLock(lock_file)
