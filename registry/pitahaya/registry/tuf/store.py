"""The served metadata: what a CDN could serve as it is, read lock-free, written whole.

`MetadataStore` reads the current version of each role from the served bytes; where those
bytes live is a subclass: `FileMetadataStore` (files on the registry's disk, the default) or
`pitahaya.registry.tuf.sql_store.SqlMetadataStore` (rows in the registry's database, for
replicas that share no disk). On disk::

    <tuf_dir>/metadata/N.root.json                 each root version
    <tuf_dir>/metadata/N.targets.json              top-level targets: delegations only
    <tuf_dir>/metadata/N.registry.json             the online role: releases, undelegated packages
    <tuf_dir>/metadata/N.publisher-<scene>.json    a delegated scene's packages, signed by its publisher
    <tuf_dir>/metadata/N.snapshot.json, timestamp.json

Files are replaced atomically, never edited, so readers need no lock: the current version of a
role is the one ``timestamp.json`` -> snapshot names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from pitahaya.client_runtime.files import write_atomic
from pitahaya.registry._files import PUBLIC_FILE_MODE
from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.tuf.roles import METADATA_NAME_RE, served_name

_VERSIONED_ROOT_RE = re.compile(r"^([1-9][0-9]*)\.root\.json$")


class MetadataStore(ABC):
    """Signed metadata by served name, and each role's current version parsed from it.

    Subclasses hold the bytes: `file`, `is_initialized`, `root_version` and `write`.
    """

    @abstractmethod
    def file(self, name: str) -> tuple[bytes, str]:
        """The bytes of a served metadata file and their sha256 (the HTTP ETag); ``root.json``
        is the newest root.

        Raises:
            NotFoundError: not a metadata name, or no such version.
        """

    @abstractmethod
    def is_initialized(self) -> bool:
        """Whether version 1 of root exists: it is written last by initialization."""

    @abstractmethod
    def root_version(self) -> int:
        """The newest root version.

        Raises:
            NotFoundError: the repository is not initialized.
        """

    @abstractmethod
    def write(self, changes: Mapping[str, Metadata[Any]]) -> None:
        """Serve signed versions by role name, in the given (chain) order, so ``timestamp.json``
        (last) only ever points at complete versions."""

    def recent_digest(self, name: str) -> str | None:
        """A sha256 of ``name`` known to be current without reading the store, or None (a
        store whose reads are cheap always reads)."""
        return None

    def root(self) -> Metadata[Root]:
        """The newest root."""
        return Metadata[Root].from_bytes(self.file(f"{self.root_version()}.root.json")[0])

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_bytes(self.file("timestamp.json")[0])

    def snapshot(self) -> Metadata[Snapshot]:
        """The snapshot the current timestamp names."""
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_bytes(self.file(f"{version}.snapshot.json")[0])

    def targets(self, role: str = Targets.type) -> Metadata[Targets] | None:
        """The current version of a targets role (top-level or delegated), or None if the
        current snapshot lists none (a publisher role before its first push)."""
        meta = self.snapshot().signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        return Metadata[Targets].from_bytes(self.file(f"{meta.version}.{role}.json")[0])

    def current(self, role: str) -> Metadata[Any]:
        """The current version of any role.

        Raises:
            NotFoundError: the role has no version yet.
        """
        if role == Root.type:
            return self.root()
        if role == Timestamp.type:
            return self.timestamp()
        if role == Snapshot.type:
            return self.snapshot()
        md = self.targets(role)
        if md is None:
            raise NotFoundError(f"no TUF role {role!r} in the current snapshot")
        return md


class FileMetadataStore(MetadataStore):
    """The signed metadata as files under ``metadata_dir``.

    Args:
        metadata_dir: The folder devices' metadata requests are answered from.
    """

    def __str__(self) -> str:
        return str(self.metadata_dir)

    def __init__(self, metadata_dir: Path) -> None:
        self.metadata_dir = metadata_dir
        self._cache: dict[str, tuple[tuple[int, int, int], bytes, str]] = {}

    def file(self, name: str) -> tuple[bytes, str]:
        """See `MetadataStore.file`.

        Polling devices ask for ``timestamp.json`` constantly, so the answer is cached per file
        and revalidated with one ``stat`` (a new version always has a new inode or mtime).
        """
        if not METADATA_NAME_RE.match(name):
            raise NotFoundError(f"no TUF metadata named {name!r}")
        if name == "root.json":
            name = f"{self.root_version()}.root.json"
        path = self.metadata_dir / name
        try:
            info = path.stat()
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            cached = self._cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"no TUF metadata named {name!r}") from e
        digest = hashlib.sha256(data).hexdigest()
        self._cache[name] = (key, data, digest)
        return data, digest

    def is_initialized(self) -> bool:
        return (self.metadata_dir / "1.root.json").exists()

    def root_version(self) -> int:
        versions = [
            int(m.group(1)) for p in self.metadata_dir.glob("*.root.json") if (m := _VERSIONED_ROOT_RE.match(p.name))
        ]
        if not versions:
            raise NotFoundError("the TUF repository is not initialized (no 1.root.json)")
        return max(versions)

    def write(self, changes: Mapping[str, Metadata[Any]]) -> None:
        for role, md in changes.items():
            write_atomic(self.metadata_dir / served_name(md, role), md.to_bytes(), mode=PUBLIC_FILE_MODE)
