"""The served metadata files: what a CDN could serve as they are, read lock-free, written atomically.

::

    <tuf_dir>/metadata/N.root.json                 each root version
    <tuf_dir>/metadata/N.targets.json              top-level targets: delegations only
    <tuf_dir>/metadata/N.registry.json             the online role: releases, undelegated packages
    <tuf_dir>/metadata/N.publisher-<scene>.json    a delegated scene's packages, signed by its publisher
    <tuf_dir>/metadata/N.snapshot.json, timestamp.json

Files are replaced atomically, never edited, so readers need no lock: the current version of a
role is the one ``timestamp.json`` -> snapshot names.
"""

from __future__ import annotations

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


class MetadataStore:
    """The signed metadata under ``metadata_dir``: served bytes, and each role's current version.

    Args:
        metadata_dir: The folder devices' metadata requests are answered from.
    """

    def __init__(self, metadata_dir: Path) -> None:
        self.metadata_dir = metadata_dir
        self._cache: dict[str, tuple[tuple[int, int, int], bytes, str]] = {}

    def file(self, name: str) -> tuple[bytes, str]:
        """The bytes of a served metadata file and their sha256 (the HTTP ETag); ``root.json``
        is the newest root.

        Polling devices ask for ``timestamp.json`` constantly, so the answer is cached per file
        and revalidated with one ``stat`` (a new version always has a new inode or mtime).

        Raises:
            NotFoundError: not a metadata name, or no such version.
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
        """Whether ``1.root.json`` exists: it is written last by initialization."""
        return (self.metadata_dir / "1.root.json").exists()

    def root_version(self) -> int:
        """The newest root version.

        Raises:
            NotFoundError: the repository is not initialized.
        """
        versions = [
            int(m.group(1)) for p in self.metadata_dir.glob("*.root.json") if (m := _VERSIONED_ROOT_RE.match(p.name))
        ]
        if not versions:
            raise NotFoundError("the TUF repository is not initialized (no 1.root.json)")
        return max(versions)

    def root(self) -> Metadata[Root]:
        """The newest root."""
        return Metadata[Root].from_file(str(self.metadata_dir / f"{self.root_version()}.root.json"))

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_file(str(self.metadata_dir / "timestamp.json"))

    def snapshot(self) -> Metadata[Snapshot]:
        """The snapshot the current timestamp names."""
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_file(str(self.metadata_dir / f"{version}.snapshot.json"))

    def targets(self, role: str = Targets.type) -> Metadata[Targets] | None:
        """The current version of a targets role (top-level or delegated), or None if the
        current snapshot lists none (a publisher role before its first push)."""
        meta = self.snapshot().signed.meta.get(f"{role}.json")
        if meta is None:
            return None
        return Metadata[Targets].from_file(str(self.metadata_dir / f"{meta.version}.{role}.json"))

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

    def write(self, changes: Mapping[str, Metadata[Any]]) -> None:
        """Write signed versions by role name, in the given (chain) order, so ``timestamp.json``
        (last) only ever points at complete files."""
        for role, md in changes.items():
            write_atomic(self.metadata_dir / served_name(md, role), md.to_bytes(), mode=PUBLIC_FILE_MODE)
