"""Content-addressed blob storage for package archives and release documents.

A blob is named by the sha256 of its bytes, so it is immutable and can be cached forever.
Workflow: a service calls `BlobStore.put` *before* committing the database row that refers
to the digest, so a committed row always points at a complete, verified blob (a crash in
between leaves at most an unreferenced blob, never a dangling row).

`BlobStore` implements the rules once (hashing, verification, idempotence); a backend
subclass supplies only the primitives `_exists`, `_write` and `_read`. `LocalBlobStore`
keeps blobs under ``<root>/sha256/ab/cdef...``; an S3 backend will fill the same slots.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from pathlib import Path

from pitahaya.registry._files import atomic_write
from pitahaya.registry.errors import NotFoundError

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(sha256: str) -> str:
    """Return ``sha256`` if it is a lowercase hex sha256 digest, else raise ValueError.

    Digests become file and object names, so anything else must never reach a backend.
    """
    if not _SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class BlobStore(ABC):
    """Immutable, content-addressed bytes. Subclasses implement the three primitives."""

    def put(self, data: bytes) -> str:
        """Store ``data`` (a no-op if already stored) and return its sha256 hex digest.

        The blob is complete and verified when this returns.
        """
        digest = sha256_hex(data)
        if not self._exists(digest):
            self._write(digest, data)
        return digest

    def get(self, sha256: str) -> bytes:
        """Return the bytes of a blob, verified against its name.

        Raises:
            NotFoundError: no blob with that digest.
            RuntimeError: the stored bytes no longer match their digest (storage corruption).
        """
        data = self._read(check_digest(sha256))
        if sha256_hex(data) != sha256:
            raise RuntimeError(f"blob {sha256} is corrupt in storage")
        return data

    def exists(self, sha256: str) -> bool:
        return self._exists(check_digest(sha256))

    @abstractmethod
    def _exists(self, sha256: str) -> bool:
        """Whether a blob is stored under this (already validated) digest."""

    @abstractmethod
    def _write(self, sha256: str, data: bytes) -> None:
        """Store ``data`` atomically under ``sha256``: readers never see partial content."""

    @abstractmethod
    def _read(self, sha256: str) -> bytes:
        """Return the stored bytes, or raise `NotFoundError`."""


class LocalBlobStore(BlobStore):
    """Blobs as files ``<root>/sha256/<first two hex digits>/<remaining 62>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """The file that holds (or would hold) a blob."""
        check_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def _exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _write(self, sha256: str, data: bytes) -> None:
        atomic_write(self.path(sha256), data)
        if sha256_hex(self.path(sha256).read_bytes()) != sha256:
            raise RuntimeError(f"blob {sha256} did not read back intact after writing")

    def _read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"no blob {sha256}") from e
