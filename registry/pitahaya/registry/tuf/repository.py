"""`TufRepository`: the registry's signed metadata, from initialization through publishing,
re-signing and key rotation.

Workflow: `TufRepository.initialize` creates the keys and version 1 of every role (once).
`TufRepository.stage_targets` records targets in the online role and signs new versions of it,
snapshot and timestamp into ``staging/``; services commit their database rows, then apply the
`StagedPublication` (``services/publication.py``), so devices never see a target without a row.
`TufRepository.refresh` re-signs online roles whose expiry is near; the server calls it
periodically. Every write happens under the publish lock and re-reads the current state from
the store, so several threads, worker processes or replicas publish one after another.

Storage: the metadata lives in files under ``<tuf_dir>/metadata/`` (one host), or, given a
``database``, in the registry's database (replicas on several hosts sharing it; the publish
lock is then a PostgreSQL advisory lock). The online keys are files under ``<tuf_dir>/keys/``
either way: replicas mount the same ones (a Kubernetes Secret), never from the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from sqlalchemy import Engine
from tuf.api.metadata import Delegations, Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp

from pitahaya.registry.blobs import check_digest
from pitahaya.registry.clock import Clock, utcnow
from pitahaya.registry.errors import ConfigurationError, ExpiredMetadataError, PublisherSignatureError
from pitahaya.registry.tuf.delegation import PublisherDelegations
from pitahaya.registry.tuf.keys import KeyInfo, KeyRing, trusted_keyids
from pitahaya.registry.tuf.publication import Publication
from pitahaya.registry.tuf.roles import (
    KEY_ROLES,
    ONLINE_ROLE,
    OFFLINE_ROLES,
    ONLINE_ROLES,
    TOP_LEVEL_ROLES,
    delegated_role_for,
    expiry,
    is_expiring,
    online_delegation,
)
from pitahaya.registry.locks import publish_lock_for
from pitahaya.registry.tuf.sql_store import SqlMetadataStore, SqlStaging
from pitahaya.registry.tuf.staging import FileStaging, StagedPublication, Staging
from pitahaya.registry.tuf.store import FileMetadataStore, MetadataStore

#: A target's content: its bytes, or its (length, sha256 hex digest) when already stored.
TargetContent = bytes | tuple[int, str]


class TufRepository:
    """The signed metadata of one registry, stored under ``tuf_dir``.

    Args:
        tuf_dir: Folder for ``keys/`` (and ``metadata/`` and ``staging/`` without ``database``).
        clock: Returns the current UTC time; tests pass a fake one to exercise expiry.
        offline_keys_dir: Where the offline keys are (default ``<tuf_dir>/offline``).
        database: Keep the metadata in this database instead of ``tuf_dir`` (see the module
            docstring); its tables come from the registry's migrations.

    Attributes:
        store: The served metadata files.
        keys: The role keys on this host.
        publishers: Scenes delegated to publisher keys, and signed pushes.
        publish_lock: Serializes publishes across threads and processes. Services hold it
            around read, check, write and commit, so the signed targets always agree with
            the newest committed rows; the repository takes it again (it is reentrant).
    """

    def __init__(
        self,
        tuf_dir: Path,
        clock: Clock = utcnow,
        *,
        offline_keys_dir: Path | None = None,
        database: Engine | None = None,
    ) -> None:
        self._files = FileMetadataStore(tuf_dir / "metadata")
        self.store: MetadataStore
        self.staging: Staging
        if database is None:
            self.store, self.staging = self._files, FileStaging(tuf_dir / "staging", self._files.metadata_dir)
        else:
            self.store, self.staging = SqlMetadataStore(database), SqlStaging(database)
        self.keys = KeyRing(tuf_dir / "keys", offline_keys_dir or tuf_dir / "offline", self.store, clock)
        self.publish_lock = publish_lock_for(database, tuf_dir / ".lock")
        self.publishers = PublisherDelegations(self.store, self.keys, self.staging, self.publish_lock, clock)
        self._clock = clock

    # -- reading (lock-free: every file is replaced atomically) -----------------------------

    def metadata_file(self, name: str) -> tuple[bytes, str]:
        """The bytes of a served metadata file and their sha256 (see `MetadataStore.file`)."""
        return self.store.file(name)

    def metadata_bytes(self, name: str) -> bytes:
        return self.store.file(name)[0]

    def targets(self) -> dict[str, TargetFile]:
        """The targets the registry's online key signs (release documents, undelegated packages)."""
        return dict(self.store.current(ONLINE_ROLE).signed.targets)

    def key_info(self, margin: float = 0.5) -> list[KeyInfo]:
        return self.keys.info(margin)

    def check_ready(self) -> None:
        """Raise unless the registry can serve: every online key loads and is trusted, and the
        served timestamp has not expired (what ``/readyz`` needs).

        Raises:
            NotFoundError: the repository is not initialized.
            SigningKeyError: an online key is missing, unsafe or untrusted.
            ExpiredMetadataError: the timestamp expired.
        """
        self.keys.check_online()
        timestamp = self.store.timestamp().signed
        if timestamp.is_expired(self._clock()):
            raise ExpiredMetadataError(f"timestamp.json expired at {timestamp.expires.isoformat()}")

    def pending_publication(self) -> StagedPublication | None:
        """The publication a crash or a failed apply left staged, if any."""
        return self.staging.pending()

    # -- writing --------------------------------------------------------------------------

    def initialize(self, *, create: bool = True) -> None:
        """Create keys and version 1 of every role, unless the repository already exists.

        A repository kept in the database whose metadata is still in ``<tuf_dir>/metadata/``
        (a registry switched to ``tuf_storage = "database"``) has every served version imported
        instead, keys and version chain unchanged, so devices notice nothing.

        The offline keys (root, top-level targets) go to ``offline_keys_dir``, to be moved off
        the host; the online role's key, snapshot's and timestamp's go to ``keys/``.
        ``1.root.json`` is written last, so its presence means initialization completed.

        Args:
            create: Create a repository when there is none. A serving replica of a repository
                kept in the database passes False: keys it created would live and die with its
                own disk, and its offline keys would be lost.

        Raises:
            ConfigurationError: the existing repository has no online role (it was created by a
                pre-release pitahaya whose top-level targets key signed online), or there is none
                and ``create`` is False.
        """
        with self.publish_lock:
            if self.store.is_initialized():
                _check_layout(self.store)
                return
            if isinstance(self.store, SqlMetadataStore) and self._files.is_initialized():
                _check_layout(self._files)
                self.store.import_files(self._files)
                return
            if not create:
                raise ConfigurationError(
                    f"no TUF repository in {self.store}: a serving replica never creates one (its keys would "
                    "be lost with its disk); run `pitahaya registry migrate` or `pitahaya keys init` first"
                )
            signers = {role: self.keys.create(role) for role in KEY_ROLES}
            root = Metadata(Root(expires=expiry(self._clock, Root.type), consistent_snapshot=True))
            for role in TOP_LEVEL_ROLES:
                root.signed.add_key(signers[role].public_key, role)
            top = Metadata(Targets(expires=expiry(self._clock, Targets.type)))
            top.signed.delegations = Delegations(keys={}, roles={ONLINE_ROLE: online_delegation()})
            top.signed.add_key(signers[ONLINE_ROLE].public_key, ONLINE_ROLE)
            snapshot = Metadata(Snapshot(expires=expiry(self._clock, Snapshot.type)))
            snapshot.signed.meta[f"{ONLINE_ROLE}.json"] = MetaFile(version=1)
            first: dict[str, Metadata[Any]] = {
                Targets.type: top,
                ONLINE_ROLE: Metadata(Targets(expires=expiry(self._clock, ONLINE_ROLE))),
                Snapshot.type: snapshot,
                Timestamp.type: Metadata(Timestamp(expires=expiry(self._clock, Timestamp.type))),
                Root.type: root,
            }
            for role, md in first.items():
                md.sign(signers[role])
            self.store.write(first)

    def add_targets(self, targets: Mapping[str, TargetContent]) -> None:
        """`stage_targets` and apply at once: for callers with no database rows to commit."""
        with self.publish_lock:
            self.stage_targets(targets).apply()

    def stage_targets(self, targets: Mapping[str, TargetContent]) -> StagedPublication:
        """Stage new versions of the online role (with ``targets`` added or replaced), snapshot
        and timestamp; the caller holds `publish_lock` until it applies or discards them.

        Args:
            targets: Content by target path (``packages/...`` or ``releases/...``). Pass the
                bytes, or ``(length, sha256)`` when the bytes are already in the blob store.

        Raises:
            PublisherSignatureError: a path lies in a scene delegated to publisher keys; the
                online key never signs those (nothing was changed).
            PublicationPendingError: a publication is already staged.
            OSError: the staged files could not be written, e.g. a full disk (nothing was changed).
        """
        if not targets:
            raise ValueError("stage_targets needs at least one target")
        with self.publish_lock:
            top = self.store.current(Targets.type).signed
            added = {path: _target_file(path, content) for path, content in targets.items()}
            for path in added:
                owner = delegated_role_for(top, path)
                if owner is None or owner.name != ONLINE_ROLE:
                    raise PublisherSignatureError(
                        f"{path} is delegated to {owner.name if owner else 'no role'}: "
                        f"the registry's online key may not sign it"
                    )
            publication = Publication(self.store, self.keys, self._clock)
            with publication.edit_targets(ONLINE_ROLE) as online:
                online.targets.update(added)
            return self.staging.stage(publication.finish(), added)

    def refresh(self, margin: float = 0.5) -> list[str]:
        """Re-sign every online role with less than ``margin`` of its lifetime left.

        The running registry calls this; it never needs the offline keys (root and top-level
        targets are renewed by `resign_offline`). A re-signed role also re-signs the roles
        that point at it (-> snapshot -> timestamp), so clients see a consistent chain.

        Returns:
            The roles that were re-signed (possibly empty).
        """
        return self._resign_expiring(ONLINE_ROLES, margin)

    def resign_offline(self, margin: float = 0.5) -> list[str]:
        """Re-sign root and the top-level ``targets`` if less than ``margin`` of their lifetime
        is left (run where the offline keys are; ``pitahaya keys resign``).

        Returns:
            The roles that were re-signed (possibly empty).

        Raises:
            SigningKeyError: an offline key needed is not here (nothing changed).
        """
        return self._resign_expiring(OFFLINE_ROLES, margin)

    def rotate_key(self, role: str) -> KeyInfo:
        """Replace ``role``'s key; devices follow without a new trusted root shipped to them.

        A top-level role's key is replaced by root N+1, signed by the current root key (and by
        the new one when root itself rotates), so a device holding root N verifies it; then the
        role's metadata is re-signed with the new key, with the chain below it. The online role's
        key is replaced by a new top-level targets version (signed by the offline ``targets``
        key) and a new online role version signed by the new key; root is untouched.

        Returns:
            The new key's info.

        Raises:
            ValueError: ``role`` is not a role with a registry key.
            NotFoundError: the repository is not initialized.
            SigningKeyError: a key needed for signing is missing or unsafe (nothing changed).
        """
        if role not in KEY_ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(KEY_ROLES)}")
        with self.publish_lock:
            self.staging.check_clear()
            new = CryptoSigner.generate_ed25519()
            signers = {role: [self.keys.signer(Root.type), new] if role == Root.type else [new]}
            publication = Publication(self.store, self.keys, self._clock, signers=signers)
            trusting = Targets.type if role == ONLINE_ROLE else Root.type
            with publication.edit(trusting) as signed:
                assert isinstance(signed, Root | Targets)
                for keyid in trusted_keyids(signed, role):
                    signed.revoke_key(keyid, role)
                signed.add_key(new.public_key, role)
            if role in (Targets.type, ONLINE_ROLE):
                with publication.edit(role):
                    pass  # the same targets, signed by the new key
            # Everything is signed in memory first: a key that cannot sign fails before any write.
            changes = publication.finish(snapshot=role == Snapshot.type, timestamp=role == Timestamp.type)
            pending = self.keys.stage_new(role, new)
            self.store.write(changes)
            self.keys.install(role, pending)
        return next(info for info in self.key_info() if info.role == role)

    # -- internals (callers hold the lock) --------------------------------------------------

    def _resign_expiring(self, roles: tuple[str, ...], margin: float) -> list[str]:
        """Sign new versions of those of ``roles`` with less than ``margin`` of their lifetime
        left, as they are, then snapshot and timestamp as needed; returns every role re-signed."""
        with self.publish_lock:
            due = [role for role in roles if is_expiring(self.store.current(role), role, self._clock, margin)]
            return self._resign(due) if due else []

    def _resign(self, roles: list[str]) -> list[str]:
        self.staging.check_clear()
        publication = Publication(self.store, self.keys, self._clock)
        for role in roles:
            if role not in (Snapshot.type, Timestamp.type):
                with publication.edit(role):
                    pass  # same content, new version and expiry
        changes = publication.finish(snapshot=Snapshot.type in roles, timestamp=Timestamp.type in roles)
        self.store.write(changes)
        return list(changes)


def _check_layout(store: MetadataStore) -> None:
    top = store.current(Targets.type).signed
    if top.delegations is None or top.delegations.roles is None or ONLINE_ROLE not in top.delegations.roles:
        raise ConfigurationError(
            f"the TUF repository in {store} has no online role {ONLINE_ROLE!r}: it was created by a "
            "pre-release pitahaya; initialize a new one (devices need its new root)"
        )


def _target_file(path: str, content: TargetContent) -> TargetFile:
    if isinstance(content, bytes):
        return TargetFile.from_data(path, content)
    length, sha256 = content
    return TargetFile(length=length, hashes={"sha256": check_digest(sha256)}, path=path)
