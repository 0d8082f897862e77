"""The registry's TUF repository: signs what devices may install.

Devices trust nothing but metadata signed by the keys in ``root``; every package archive
and release document is a TUF *target* whose length and sha256 the signed ``targets``
metadata pins. The files this module writes are static, so a CDN can serve them::

    <tuf_dir>/keys/<role>.pem            ed25519 private key per role, mode 0600
    <tuf_dir>/metadata/1.root.json       N.root.json for each root version
    <tuf_dir>/metadata/N.targets.json    every version kept (consistent snapshots)
    <tuf_dir>/metadata/N.snapshot.json
    <tuf_dir>/metadata/timestamp.json    the one mutable entry point

Workflow: `TufRepository.initialize` creates the keys and version 1 of every role on first
start (and does nothing later). `TufRepository.add_targets` records new targets and then
re-signs targets, snapshot and timestamp with bumped versions, in that order, so
``timestamp.json`` (written last) only ever points at complete files. `TufRepository.refresh`
re-signs roles whose expiry is near; call it periodically. Every write happens under one
file lock and re-reads the current state from disk, so several threads or worker processes
sharing a data dir publish one after another.

Keys live on the registry host for this walking skeleton; a production deployment will keep
the root key offline (python-tuf signers make that a swap of `Signer` implementations).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, UTC
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    TargetFile,
    Timestamp,
)

from pitahaya.registry._files import FileLock, atomic_write
from pitahaya.registry.blobs import check_digest
from pitahaya.registry.errors import NotFoundError

ROLES: tuple[str, ...] = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

#: How long each role's signature stays valid. Short-lived roles bound freeze attacks.
EXPIRY: dict[str, timedelta] = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=90),
    Snapshot.type: timedelta(days=7),
    Timestamp.type: timedelta(days=1),
}

#: Metadata file names the repository serves; ``root.json`` means the newest root.
METADATA_NAME_RE = re.compile(r"^(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot)|timestamp|root)\.json$")

_VERSIONED_ROOT_RE = re.compile(r"^([1-9][0-9]*)\.root\.json$")
_CONSISTENT_TARGET_RE = re.compile(r"^([0-9a-f]{64})\.(.+)$")

#: A target's content: its bytes, or its (length, sha256 hex digest) when already stored.
TargetContent = bytes | tuple[int, str]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_consistent_target(name: str) -> tuple[str, str]:
    """Split a consistent-snapshot target name ``<dir>/<sha256>.<basename>``.

    Returns:
        ``(target_path, sha256)``, e.g. ``("releases/s/stable.json", "ab12...")``.

    Raises:
        NotFoundError: the name is not of that form (so no file can have it).
    """
    directory, _, filename = name.rpartition("/")
    match = _CONSISTENT_TARGET_RE.match(filename)
    if match is None:
        raise NotFoundError(f"no target {name!r}: expected <dir>/<sha256>.<name>")
    sha256, basename = match.groups()
    return (f"{directory}/{basename}" if directory else basename), sha256


class TufRepository:
    """The signed metadata of one registry, stored under ``tuf_dir``.

    Args:
        tuf_dir: Folder for ``keys/`` and ``metadata/``.
        clock: Returns the current UTC time; tests pass a fake one to exercise expiry.

    Attributes:
        publish_lock: Serializes publishes across threads and processes. Services hold it
            around read, check, write and commit, so the signed targets always agree with
            the newest committed rows; the repository takes it again (it is reentrant).
    """

    def __init__(self, tuf_dir: Path, clock: Clock = utc_now) -> None:
        self.keys_dir = tuf_dir / "keys"
        self.metadata_dir = tuf_dir / "metadata"
        self._clock = clock
        self.publish_lock = FileLock(tuf_dir / ".lock")
        self._file_cache: dict[str, tuple[tuple[int, int, int], bytes, str]] = {}

    # -- reading (lock-free: every file is replaced atomically) -----------------------------

    def metadata_bytes(self, name: str) -> bytes:
        """The bytes of a served metadata file; ``root.json`` is the newest root.

        Raises:
            NotFoundError: not a metadata name, or no such version.
        """
        return self.metadata_file(name)[0]

    def metadata_file(self, name: str) -> tuple[bytes, str]:
        """The bytes of a served metadata file and their sha256 (the HTTP ETag).

        Polling devices ask for ``timestamp.json`` constantly, so the answer is cached per
        file and revalidated with one ``stat`` (files are replaced atomically, never edited,
        so a new version always has a new inode or mtime).

        Raises:
            NotFoundError: not a metadata name, or no such version.
        """
        if not METADATA_NAME_RE.match(name):
            raise NotFoundError(f"no TUF metadata named {name!r}")
        if name == "root.json":
            name = f"{self._latest_root_version()}.root.json"
        path = self.metadata_dir / name
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._file_cache.get(name)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"no TUF metadata named {name!r}") from e
        digest = hashlib.sha256(data).hexdigest()
        self._file_cache[name] = (key, data, digest)
        return data, digest

    def targets(self) -> dict[str, TargetFile]:
        """The targets of the current signed ``targets`` metadata, by target path."""
        return dict(self._load_current(Targets.type).signed.targets)

    def check_keys(self) -> None:
        """Raise unless every role's key loads and is trusted by the current root, and the
        served timestamp has not expired (what ``/readyz`` needs before taking traffic).

        Raises:
            NotFoundError: the repository is not initialized.
            RuntimeError: a key is missing or untrusted, or the timestamp expired.
        """
        for role in ROLES:
            try:
                self._signer(role)
            except FileNotFoundError as e:
                raise RuntimeError(f"signing key of role {role!r} is missing") from e
        timestamp = self._load_current(Timestamp.type)
        if timestamp.signed.is_expired(self._clock()):
            raise RuntimeError(f"timestamp.json expired at {timestamp.signed.expires.isoformat()}")

    # -- writing --------------------------------------------------------------------------

    def initialize(self) -> None:
        """Create keys and version 1 of every role, unless the repository already exists.

        ``1.root.json`` is written last, so its presence means initialization completed.
        """
        with self.publish_lock:
            if (self.metadata_dir / "1.root.json").exists():
                return
            signers = {role: self._load_or_create_signer(role) for role in ROLES}
            root = Metadata(Root(expires=self._expiry(Root.type), consistent_snapshot=True))
            for role, signer in signers.items():
                root.signed.add_key(signer.public_key, role)
            targets = Metadata(Targets(expires=self._expiry(Targets.type)))
            snapshot = Metadata(Snapshot(expires=self._expiry(Snapshot.type)))
            timestamp = Metadata(Timestamp(expires=self._expiry(Timestamp.type)))
            for md in (targets, snapshot, timestamp, root):
                md.sign(signers[md.signed.type])
                self._write(md)

    def add_targets(self, targets: Mapping[str, TargetContent]) -> None:
        """Add or replace targets, then publish new targets, snapshot and timestamp versions.

        Args:
            targets: Content by target path (``packages/...`` or ``releases/...``). Pass the
                bytes, or ``(length, sha256)`` when the bytes are already in the blob store.
        """
        if not targets:
            raise ValueError("add_targets needs at least one target")
        with self.publish_lock:
            current = self._load_current(Targets.type)
            for path, content in targets.items():
                current.signed.targets[path] = _target_file(path, content)
            self._publish_from(current)

    def refresh(self, margin: float = 0.5) -> list[str]:
        """Re-sign every role with less than ``margin`` of its lifetime left.

        A re-signed role also re-signs the roles that point at it (targets → snapshot →
        timestamp), so clients see a consistent chain.

        Returns:
            The roles that were re-signed (possibly empty).
        """
        with self.publish_lock:
            now = self._clock()
            refreshed: list[str] = []
            root = self._load_root(self._latest_root_version())
            if root.signed.expires - now < EXPIRY[Root.type] * margin:
                self._bump_and_sign(root)
                self._write(root)
                refreshed.append(Root.type)
            for role in (Targets.type, Snapshot.type, Timestamp.type):
                md = self._load_current(role)
                if md.signed.expires - now < EXPIRY[role] * margin:
                    refreshed.extend(self._publish_from(md))
                    break  # _publish_from re-signed this role and every role after it
            return refreshed

    # -- internals (callers hold the lock for anything that writes) -------------------------

    def _publish_from(self, changed: Metadata) -> list[str]:
        """Bump and sign ``changed`` and every role that references it, write them, name them."""
        chain = [Targets.type, Snapshot.type, Timestamp.type]
        pending = [changed] + [self._load_current(role) for role in chain[chain.index(changed.signed.type) + 1 :]]
        for md in pending:
            if isinstance(md.signed, Snapshot):
                md.signed.meta[f"{Targets.type}.json"] = MetaFile(version=self._current_version(Targets.type, pending))
            elif isinstance(md.signed, Timestamp):
                md.signed.snapshot_meta = MetaFile(version=self._current_version(Snapshot.type, pending))
            self._bump_and_sign(md)
        for md in pending:
            self._write(md)
        return [md.signed.type for md in pending]

    def _current_version(self, role: str, pending: list[Metadata]) -> int:
        for md in pending:
            if md.signed.type == role:
                return md.signed.version
        return self._load_current(role).signed.version

    def _bump_and_sign(self, md: Metadata) -> None:
        md.signed.version += 1
        md.signed.expires = self._expiry(md.signed.type)
        md.sign(self._signer(md.signed.type))

    def _expiry(self, role: str) -> datetime:
        """Expiry of a role signed now, in whole seconds as the TUF format stores it."""
        return self._clock().replace(microsecond=0) + EXPIRY[role]

    def _load_current(self, role: str) -> Metadata:
        """The live version of a role, found by following timestamp → snapshot."""
        if role == Root.type:
            return self._load_root(self._latest_root_version())
        timestamp = Metadata[Timestamp].from_file(str(self.metadata_dir / "timestamp.json"))
        if role == Timestamp.type:
            return timestamp
        snapshot_file = self.metadata_dir / f"{timestamp.signed.snapshot_meta.version}.snapshot.json"
        snapshot = Metadata[Snapshot].from_file(str(snapshot_file))
        if role == Snapshot.type:
            return snapshot
        version = snapshot.signed.meta[f"{role}.json"].version
        return Metadata.from_file(str(self.metadata_dir / f"{version}.{role}.json"))

    def _load_root(self, version: int) -> Metadata[Root]:
        return Metadata[Root].from_file(str(self.metadata_dir / f"{version}.root.json"))

    def _latest_root_version(self) -> int:
        versions = [
            int(m.group(1)) for p in self.metadata_dir.glob("*.root.json") if (m := _VERSIONED_ROOT_RE.match(p.name))
        ]
        if not versions:
            raise NotFoundError("the TUF repository is not initialized (no 1.root.json)")
        return max(versions)

    def _write(self, md: Metadata) -> None:
        role = md.signed.type
        name = f"{role}.json" if role == Timestamp.type else f"{md.signed.version}.{role}.json"
        atomic_write(self.metadata_dir / name, md.to_bytes())

    def _key_path(self, role: str) -> Path:
        return self.keys_dir / f"{role}.pem"

    def _load_or_create_signer(self, role: str) -> CryptoSigner:
        path = self._key_path(role)
        if path.exists():
            return CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
        signer = CryptoSigner.generate_ed25519()
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, signer.private_bytes, mode=0o600)
        return signer

    def _signer(self, role: str) -> Signer:
        """The signer of a role, checked against the keys the current root trusts for it."""
        path = self._key_path(role)
        signer = CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
        root = self._load_root(self._latest_root_version()).signed
        if signer.public_key.keyid not in root.roles[role].keyids:
            raise RuntimeError(f"key {path} is not trusted for role {role!r} by the current root")
        return signer


def _target_file(path: str, content: TargetContent) -> TargetFile:
    if isinstance(content, bytes):
        return TargetFile.from_data(path, content)
    length, sha256 = content
    return TargetFile(length=length, hashes={"sha256": check_digest(sha256)}, path=path)
