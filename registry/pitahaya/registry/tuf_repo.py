"""The registry's TUF repository: signs what devices may install.

Devices trust nothing but metadata signed by the keys in ``root``; every package archive
and release document is a TUF *target* whose length and sha256 the signed ``targets``
metadata pins. The files this module writes are static, so a CDN can serve them::

    <tuf_dir>/keys/{registry,snapshot,timestamp}.pem   online keys, mode 0600: the server signs with them
    <tuf_dir>/offline/{root,targets}.pem              offline keys: created here, then MOVE THEM OFF THE HOST
    <tuf_dir>/metadata/N.root.json                     each root version
    <tuf_dir>/metadata/N.targets.json                  top-level targets: delegations only
    <tuf_dir>/metadata/N.registry.json                 the online role: releases, undelegated packages
    <tuf_dir>/metadata/N.publisher-<scene>.json        a delegated scene's packages, signed by its publisher
    <tuf_dir>/metadata/N.snapshot.json, timestamp.json
    <tuf_dir>/staging/                                 a signed publication waiting for its rows' commit

Trust (PEP 458/480): root (offline) trusts the keys of targets (offline), snapshot and
timestamp (online). The top-level ``targets`` holds no targets, only delegations, in this
order: ``publisher-<scene>`` (``packages/<scene>/*``, terminating, the publisher's keys) for
each delegated scene, then the online role ``registry`` (``releases/*/*`` and
``packages/*/*``). ngclient searches delegations in order, so a delegated scene's packages are
found in its publisher role only, everything else in ``registry``. The running registry holds
only online keys: it can sign releases and undelegated packages, but it cannot change who a
scene is delegated to, because that takes a new top-level ``targets`` signed by the offline key
(`delegate`, `rotate_key`, `resign_offline` run by an admin where that key is).

Workflow: `TufRepository.initialize` creates the keys and version 1 of every role (once).
`TufRepository.stage_targets` records targets in the online role and signs new versions of
it, snapshot and timestamp into ``<tuf_dir>/staging/`` (which nothing serves), ending with a
journal naming the files and the targets they add; `StagedPublication.apply` renames them
into ``metadata/`` in chain order, so ``timestamp.json`` (moved last) only ever points at
complete files, and `StagedPublication.discard` drops them. Services commit their database
rows between the two (``services/publication.py``), so devices never see a target without a
row; `add_targets` stages and applies at once, for callers with no rows. `TufRepository.refresh` re-signs online roles whose expiry is near; the server calls
it periodically. Every write happens under one file lock and re-reads the current state from
disk, so several threads or worker processes sharing a data dir publish one after another.

Publisher pushes: a push to a delegated scene carries the publisher's signatures over the
role's next version, which `next_delegated_metadata` determines (current version + 1, the
current targets plus the new archive's entry); `verify_delegated` rebuilds it and checks the
signatures against the delegation, `stage_delegated` stages it with new snapshot and
timestamp versions (`publish_delegated` also applies them). The online key refuses to sign anything under a delegated path.

A repository of the old layout (top-level ``targets`` signing targets itself, every key in
``keys/``) keeps working as before until `migrate_to_online_role` (``pitahaya keys migrate``)
moves its targets into the online role with one new top-level targets version.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Key, Signature, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    Targets,
    TargetFile,
    Timestamp,
)

from pitahaya.client_runtime.files import fsync_dir, write_atomic
from pitahaya.registry._files import PUBLIC_FILE_MODE
from pitahaya.registry._files import FileLock
from pitahaya.registry.key_files import KEY_FILE_MODE, load_private_key
from pitahaya.registry.blobs import check_digest
from pitahaya.registry.errors import (
    InvalidArgumentError,
    NotFoundError,
    PublisherSignatureError,
    SigningKeyError,
    StaleDelegationError,
)

ROLES: tuple[str, ...] = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

#: The delegated role the running registry signs release documents and undelegated packages with.
ONLINE_ROLE = "registry"

#: What the online role may sign: every release document and package not delegated before it.
ONLINE_PATHS: tuple[str, ...] = ("releases/*/*", "packages/*/*")

#: Every role with a registry key, in trust order (``keys list`` shows them so).
KEY_ROLES: tuple[str, ...] = (Root.type, Targets.type, ONLINE_ROLE, Snapshot.type, Timestamp.type)

#: Roles whose keys the running registry never needs; keep them off the host.
OFFLINE_ROLES: tuple[str, ...] = (Root.type, Targets.type)

#: How long each role's signature stays valid. Online roles are short-lived to bound freeze
#: attacks; the offline ones change only by an admin's hand.
EXPIRY: dict[str, timedelta] = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=365),
    ONLINE_ROLE: timedelta(days=90),
    Snapshot.type: timedelta(days=7),
    Timestamp.type: timedelta(days=1),
}

#: A publisher role's signature: long, because only the publisher can renew it (by pushing).
DELEGATED_EXPIRY = timedelta(days=365)

#: Prefix of the role a scene's packages are delegated to: ``publisher-<scene>``.
PUBLISHER_ROLE_PREFIX = "publisher-"

#: Metadata file names the repository serves; ``root.json`` means the newest root.
METADATA_NAME_RE = re.compile(
    r"^(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot|registry|publisher-[a-z][a-z0-9_]{0,63})|timestamp|root)\.json$"
)


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


def publisher_role(scene: str) -> str:
    """The delegated role that signs ``scene``'s packages."""
    return f"{PUBLISHER_ROLE_PREFIX}{scene}"


def next_delegated_metadata(
    current: Metadata[Targets] | None, target: TargetFile, expires: datetime
) -> Metadata[Targets]:
    """The unsigned next version of a publisher role: ``current`` plus ``target``, version + 1.

    The publisher (signing) and the registry (verifying) both build it with this function,
    so a push carries only signatures: nothing but this exact document verifies under them,
    and it can neither drop nor alter another target.
    """
    targets = dict(current.signed.targets) if current is not None else {}
    targets[target.path] = target
    version = current.signed.version + 1 if current is not None else 1
    return Metadata(Targets(version=version, expires=expires.replace(microsecond=0), targets=targets))


@dataclass(frozen=True)
class PublisherSignatures:
    """A publisher's signatures over its scene role's next version: what a signed push carries.

    The document itself is not sent: `next_delegated_metadata` rebuilds it from the current
    version, the archive and ``expires``, so the payload stays a few hundred bytes however many
    packages the scene has, and fits the ``X-Pitahaya-Publisher-Signatures`` request header.

    Attributes:
        version: The role version signed (current + 1).
        expires: Its expiry, in whole seconds.
        signatures: One per publisher key used.
    """

    HEADER = "X-Pitahaya-Publisher-Signatures"

    version: int
    expires: datetime
    signatures: tuple[Signature, ...]

    @classmethod
    def sign(cls, unsigned: Metadata[Targets], signers: Sequence[Signer]) -> PublisherSignatures:
        """Sign ``unsigned`` (from `next_delegated_metadata`) with every signer."""
        signatures = tuple(signer.sign(unsigned.signed_bytes) for signer in signers)
        return cls(unsigned.signed.version, unsigned.signed.expires, signatures)

    def to_header(self) -> str:
        document = {
            "version": self.version,
            "expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "signatures": [signature.to_dict() for signature in self.signatures],
        }
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()

    @classmethod
    def from_header(cls, value: str) -> PublisherSignatures:
        """Parse the header.

        Raises:
            InvalidArgumentError: not base64url JSON of that shape.
        """
        try:
            document = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
            version = document["version"]
            expires = datetime.strptime(document["expires"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            signatures = tuple(Signature.from_dict(dict(item)) for item in document["signatures"])
            if not isinstance(version, int) or isinstance(version, bool) or version < 1 or not signatures:
                raise ValueError("version must be a positive integer and signatures non-empty")
        except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InvalidArgumentError(
                f"{cls.HEADER} must be base64url JSON {{version, expires, signatures}}: {e}"
            ) from None
        return cls(version, expires, signatures)


@dataclass(frozen=True)
class KeyInfo:
    """One role's key as ``keys list`` shows it (never the key itself).

    Attributes:
        role: TUF role.
        keyid: TUF key id of the public key.
        scheme: Signature scheme (``ed25519``).
        mode: File mode, octal text (``0600``); empty when the key is not on this host.
        trusted: Whether the current metadata (root, or top-level targets for the online
            role) trusts this key for the role.
        path: The key file (where it would be, for an offline key kept elsewhere).
        location: ``online`` (the running registry signs with it) or ``offline``.
        present: Whether the key file is on this host.
        expires: When the role's current metadata expires (ISO 8601).
        resign_due: Less than half its lifetime is left: the registry re-signs online roles
            itself; an offline one needs ``pitahaya keys resign`` where its key is.
    """

    role: str
    keyid: str
    scheme: str
    mode: str
    trusted: bool
    path: str
    location: str
    present: bool
    expires: str
    resign_due: bool


@dataclass(frozen=True)
class StagedPublication:
    """Signed metadata written to ``<tuf_dir>/staging/``, not yet served.

    Exactly one publication is staged at a time (under the publish lock); its journal
    survives a crash, so `TufRepository.pending_publication` finds it again.

    Attributes:
        files: Served file names, in the order `apply` moves them (``timestamp.json`` last).
        targets: ``{target path: sha256}`` the publication adds or changes.
    """

    repository: TufRepository
    files: tuple[str, ...]
    targets: Mapping[str, str]

    def apply(self) -> None:
        """Make the publication visible: rename each staged file into ``metadata/``, in
        order, then drop the journal. Idempotent (a file already moved is skipped), so it can
        finish an apply that a crash interrupted. Renames need no new disk space."""
        self.repository._apply_staged(self)

    def discard(self) -> None:
        """Remove the staged files and the journal; the served metadata never changed."""
        self.repository._discard_staged()


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

    def __init__(self, tuf_dir: Path, clock: Clock = utc_now, *, offline_keys_dir: Path | None = None) -> None:
        self.keys_dir = tuf_dir / "keys"
        self.offline_keys_dir = offline_keys_dir or tuf_dir / "offline"
        self.metadata_dir = tuf_dir / "metadata"
        self.staging_dir = tuf_dir / "staging"
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

    def has_online_role(self) -> bool:
        """Whether the top-level ``targets`` delegates to the online role (the current layout);
        False for a repository from before it, whose ``targets`` key signs targets directly.

        Raises:
            NotFoundError: the repository is not initialized.
        """
        self._latest_root_version()
        delegations = self._load_current(Targets.type).signed.delegations
        return delegations is not None and delegations.roles is not None and ONLINE_ROLE in delegations.roles

    def targets(self) -> dict[str, TargetFile]:
        """The targets the registry's online key signs (release documents, undelegated packages)."""
        return dict(self._load_current(self._holder()).signed.targets)

    def offline_keys_here(self) -> list[Path]:
        """The offline keys (root, top-level targets) present on this host: they should not be."""
        return [path for role in OFFLINE_ROLES if (path := self._key_path(role)).exists()]

    def online_roles(self) -> tuple[str, ...]:
        """The roles the running registry signs with keys under ``keys/``."""
        if self.has_online_role():
            return (ONLINE_ROLE, Snapshot.type, Timestamp.type)
        return ROLES  # the old layout kept every key on the host

    def check_keys(self) -> None:
        """Raise unless every online role's key loads and is trusted, and the served timestamp
        has not expired (what ``/readyz`` needs). Offline keys are not needed to serve.

        Raises:
            NotFoundError: the repository is not initialized.
            RuntimeError: a key is missing or untrusted, or the timestamp expired.
        """
        for role in self.online_roles():
            try:
                self._signer(role)
            except SigningKeyError as e:
                raise RuntimeError(f"signing key of role {role!r}: {e}") from e
        timestamp = self._load_current(Timestamp.type)
        if timestamp.signed.is_expired(self._clock()):
            raise RuntimeError(f"timestamp.json expired at {timestamp.signed.expires.isoformat()}")

    def key_info(self, margin: float = 0.5) -> list[KeyInfo]:
        """Key id, location, file mode, trust and expiry of every role's key.

        An offline key absent from this host is listed from the metadata that trusts it.

        Raises:
            NotFoundError: the repository is not initialized.
            SigningKeyError: an online key is missing, or a present key is readable by others
                or not a key.
        """
        now = self._clock()
        online = self.online_roles()
        infos = []
        for role in KEY_ROLES if self.has_online_role() else ROLES:
            trusted_ids = self._trusted_keyids(role)
            path = self._key_path(role)
            md = self._load_current(role)
            expires = md.signed.expires
            due = expires - now < EXPIRY[role] * margin
            location = "online" if role in online else "offline"
            if role not in online and not path.exists():
                infos.append(
                    KeyInfo(
                        role, trusted_ids[0], "ed25519", "", True, str(path), location, False, expires.isoformat(), due
                    )
                )
                continue
            public = load_private_key(path).public_key
            mode = f"{stat.S_IMODE(path.stat().st_mode):04o}"
            trusted = public.keyid in trusted_ids
            infos.append(
                KeyInfo(
                    role,
                    public.keyid,
                    public.scheme,
                    mode,
                    trusted,
                    str(path),
                    location,
                    True,
                    expires.isoformat(),
                    due,
                )
            )
        return infos

    def delegation(self, scene: str) -> tuple[DelegatedRole, dict[str, Key]] | None:
        """The scene's publisher delegation and its public keys by key id, or None if the
        registry's online key signs the scene's packages."""
        delegations = self._load_current(Targets.type).signed.delegations
        if delegations is None or delegations.roles is None:
            return None
        role = delegations.roles.get(publisher_role(scene))
        if role is None:
            return None
        return role, {keyid: delegations.keys[keyid] for keyid in role.keyids}

    def delegated_metadata(self, scene: str) -> Metadata[Targets] | None:
        """The current signed version of the scene's publisher role; None before its first push."""
        return self._load_delegated(publisher_role(scene))

    # -- writing --------------------------------------------------------------------------

    def initialize(self) -> None:
        """Create keys and version 1 of every role, unless the repository already exists.

        The offline keys (root, top-level targets) go to ``offline_keys_dir``, to be moved off
        the host; the online role's key, snapshot's and timestamp's go to ``keys/``.
        ``1.root.json`` is written last, so its presence means initialization completed.
        """
        with self.publish_lock:
            if (self.metadata_dir / "1.root.json").exists():
                return
            signers = {role: self._load_or_create_signer(role) for role in KEY_ROLES}
            root = Metadata(Root(expires=self._expiry(Root.type), consistent_snapshot=True))
            for role in ROLES:
                root.signed.add_key(signers[role].public_key, role)
            targets = Metadata(Targets(expires=self._expiry(Targets.type)))
            targets.signed.delegations = Delegations(keys={}, roles={ONLINE_ROLE: _online_delegation()})
            targets.signed.add_key(signers[ONLINE_ROLE].public_key, ONLINE_ROLE)
            online = Metadata(Targets(expires=self._expiry(ONLINE_ROLE)))
            snapshot = Metadata(Snapshot(expires=self._expiry(Snapshot.type)))
            snapshot.signed.meta[f"{ONLINE_ROLE}.json"] = MetaFile(version=1)
            timestamp = Metadata(Timestamp(expires=self._expiry(Timestamp.type)))
            for role, md in (
                (Targets.type, targets),
                (ONLINE_ROLE, online),
                (Snapshot.type, snapshot),
                (Timestamp.type, timestamp),
                (Root.type, root),
            ):
                md.sign(signers[role])
                self._write(md, role)

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
            OSError: the staged files could not be written, e.g. a full disk (nothing was changed).
        """
        if not targets:
            raise ValueError("stage_targets needs at least one target")
        with self.publish_lock:
            holder = self._holder()
            top = self._load_current(Targets.type).signed
            current = self._load_current(holder)
            added: dict[str, TargetFile] = {}
            for path, content in targets.items():
                owner = _delegated_role_for(top, path)
                if (owner.name if owner is not None else Targets.type) != holder:
                    raise PublisherSignatureError(
                        f"{path} is delegated to {owner.name if owner else 'no role'}: "
                        f"the registry's online key may not sign it"
                    )
                added[path] = current.signed.targets[path] = _target_file(path, content)
            return self._stage(self._chain({holder: current}), added)

    def delegate(self, scene: str, public_keys: Sequence[Key], threshold: int = 1) -> DelegatedRole:
        """Delegate ``packages/<scene>/*`` to the role ``publisher-<scene>`` trusting ``public_keys``.

        Re-delegating a scene replaces its keys and threshold. The delegation is terminating
        and listed before the online role, so a device never looks elsewhere for that scene's
        packages. Signs a new top-level targets version with the offline ``targets`` key (an
        admin action where that key is).

        Raises:
            NotFoundError: the repository is not initialized.
            SigningKeyError: the ``targets`` key is not here (nothing changed).
            InvalidArgumentError: no keys, a threshold outside 1..len(keys), or the scene already
                has packages signed by the online key (delegate before the first push).
        """
        unique = {key.keyid: key for key in public_keys}
        if not unique or not 1 <= threshold <= len(unique):
            raise InvalidArgumentError(f"threshold {threshold} needs between 1 and {len(unique)} distinct keys")
        name = publisher_role(scene)
        pattern = f"packages/{scene}/*"
        with self.publish_lock:
            self._latest_root_version()  # NotFoundError before anything else if not initialized
            self._signer(Targets.type)  # SigningKeyError before anything else without the offline key
            online = sorted(path for path in self.targets() if path.startswith(f"packages/{scene}/"))
            if online:
                raise InvalidArgumentError(
                    f"scene {scene} already has {len(online)} package(s) signed by the registry's online key "
                    f"({online[0]}, ...); delegate a scene before its first push"
                )
            current = self._load_current(Targets.type)
            signed = current.signed
            if signed.delegations is None:
                signed.delegations = Delegations(keys={}, roles={})
            roles = signed.delegations.roles
            assert roles is not None  # set above, and this repository never writes succinct roles
            if name in roles:
                for keyid in list(roles[name].keyids):
                    signed.revoke_key(keyid, name)
            roles[name] = DelegatedRole(name=name, keyids=[], threshold=threshold, terminating=True, paths=[pattern])
            if ONLINE_ROLE in roles:  # ngclient searches in order: the catch-all online role goes last
                roles[ONLINE_ROLE] = roles.pop(ONLINE_ROLE)
            for key in unique.values():
                signed.add_key(key, name)
            self._publish({Targets.type: current})
            return roles[name]

    def migrate_to_online_role(self) -> int:
        """Move the targets the top-level ``targets`` signs itself into the online role.

        One new top-level targets version (signed by the ``targets`` key, found in
        ``offline_keys_dir`` or, for the old layout, ``keys/``) keeps every publisher
        delegation and delegates ``releases/*/*`` and ``packages/*/*`` to the online role,
        whose version 1 holds the moved targets; devices trusting the current root follow
        with no new root. A new online key is created under ``keys/``, and the root and
        targets keys move from ``keys/`` to ``offline_keys_dir`` (then move that folder off
        the host).

        Returns:
            The number of targets moved.

        Raises:
            InvalidArgumentError: the repository already has the online role.
            SigningKeyError: the ``targets`` key is missing or unsafe (nothing changed).
        """
        with self.publish_lock:
            if self.has_online_role():
                raise InvalidArgumentError(f"the repository already delegates to the online role {ONLINE_ROLE!r}")
            for role in (Targets.type, Snapshot.type, Timestamp.type):
                self._signer(role)  # refuse before changing anything
            online_signer = self._load_or_create_signer(ONLINE_ROLE)
            top = self._load_current(Targets.type)
            moved = dict(top.signed.targets)
            online = Metadata(Targets(version=1, expires=self._expiry(ONLINE_ROLE), targets=moved))
            top.signed.targets = {}
            if top.signed.delegations is None:
                top.signed.delegations = Delegations(keys={}, roles={})
            assert top.signed.delegations.roles is not None
            top.signed.delegations.roles[ONLINE_ROLE] = _online_delegation()
            top.signed.add_key(online_signer.public_key, ONLINE_ROLE)
            self._publish_top_and_online(top, online, online_signer)
            for role in (Root.type, Targets.type):
                legacy = self.keys_dir / f"{role}.pem"
                if legacy.exists():
                    self.offline_keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    os.replace(legacy, self.offline_keys_dir / legacy.name)
            return len(moved)

    def verify_delegated(self, scene: str, target: TargetFile, signed: PublisherSignatures) -> Metadata[Targets]:
        """The scene role's next version adding ``target``, once ``signed`` proves the publisher signed it.

        Rebuilds the version with `next_delegated_metadata`, so the signatures cover exactly
        the current targets plus ``target``, and checks them against the delegation's keys and
        threshold. Hold `publish_lock` from here through `publish_delegated`.

        Raises:
            InvalidArgumentError: the scene is not delegated (push without signatures).
            PublisherSignatureError: ``target`` lies outside the delegation, the version is
                expired, or the signatures do not meet the threshold.
            StaleDelegationError: the signed version is not the current version + 1.
        """
        name = publisher_role(scene)
        with self.publish_lock:
            top = self._load_current(Targets.type)
            role = _delegated_role_for(top.signed, target.path)
            if role is None or role.name != name:
                if self.delegation(scene) is None:
                    raise InvalidArgumentError(f"scene {scene} is not delegated to publisher keys; push unsigned")
                raise PublisherSignatureError(f"{target.path} lies outside the delegation of {name}")
            new = next_delegated_metadata(self._load_delegated(name), target, signed.expires)
            if new.signed.version != signed.version:
                raise StaleDelegationError(
                    f"the push signs {name} version {signed.version}, but the next version is {new.signed.version}: "
                    "another push landed first; fetch the delegation again and re-sign"
                )
            if new.signed.is_expired(self._clock()):
                raise PublisherSignatureError(f"the signed {name} version {signed.version} has already expired")
            new.signatures.update({signature.keyid: signature for signature in signed.signatures})
            try:
                top.signed.verify_delegate(name, new.signed_bytes, new.signatures)
            except UnsignedMetadataError as e:
                raise PublisherSignatureError(
                    f"the signatures on {name} version {signed.version} do not meet its threshold of "
                    f"{role.threshold} publisher key(s): {e}"
                ) from e
            return new

    def publish_delegated(self, scene: str, verified: Metadata[Targets]) -> None:
        """`stage_delegated` and apply at once: for callers with no database rows to commit."""
        with self.publish_lock:
            self.stage_delegated(scene, verified).apply()

    def stage_delegated(self, scene: str, verified: Metadata[Targets]) -> StagedPublication:
        """Stage a version `verify_delegated` returned, exactly as the publisher signed it,
        with new snapshot and timestamp versions; the caller holds `publish_lock`.

        Raises:
            OSError: the staged files could not be written, e.g. a full disk (nothing was changed).
        """
        name = publisher_role(scene)
        with self.publish_lock:
            current = self._load_delegated(name)
            before = current.signed.targets if current is not None else {}
            added = {path: t for path, t in verified.signed.targets.items() if before.get(path) != t}
            return self._stage(self._chain({name: verified}, sign=False), added)

    def pending_publication(self) -> StagedPublication | None:
        """The publication a crash or a failed apply left staged, if any (its journal)."""
        try:
            journal = json.loads(self._journal.read_bytes())
        except FileNotFoundError:
            return None
        return StagedPublication(self, tuple(journal["files"]), dict(journal["targets"]))

    def rotate_key(self, role: str) -> KeyInfo:
        """Replace ``role``'s key; devices follow without a new trusted root shipped to them.

        A top-level role's key is replaced by root N+1, signed by the current root key (and by
        the new one when root itself rotates), so a device holding root N verifies it; then the
        roles from ``role`` down the chain are re-signed with the now-current keys. The online
        role's key is replaced by a new top-level targets version (signed by the offline
        ``targets`` key) and a new online role version signed by the new key; root is untouched.

        Returns:
            The new key's info.

        Raises:
            ValueError: ``role`` is not a role with a registry key.
            NotFoundError: the repository is not initialized.
            SigningKeyError: a key needed for signing is missing or unsafe (nothing changed).
        """
        roles = KEY_ROLES if self.has_online_role() else ROLES
        if role not in roles:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(roles)}")
        with self.publish_lock:
            # Keys that sign here: the trusting role's, and those re-signed below the rotated one.
            needed = {
                ONLINE_ROLE: (Targets.type, Snapshot.type, Timestamp.type),
                Targets.type: (Root.type, Snapshot.type, Timestamp.type),
                Snapshot.type: (Root.type, Timestamp.type),
            }.get(role, (Root.type,))
            for each in needed:  # refuse before changing anything
                self._signer(each)
            new_signer = CryptoSigner.generate_ed25519()
            key_path = self._key_path(role)
            pending_key = key_path.with_name(key_path.name + ".new")
            if role == ONLINE_ROLE:
                top = self._load_current(Targets.type)
                for keyid in list(top.signed.delegations.roles[ONLINE_ROLE].keyids):  # type: ignore[union-attr,index]
                    top.signed.revoke_key(keyid, ONLINE_ROLE)
                top.signed.add_key(new_signer.public_key, ONLINE_ROLE)
                write_atomic(pending_key, new_signer.private_bytes, mode=KEY_FILE_MODE)
                online = self._load_current(ONLINE_ROLE)
                online.signed.version += 1
                self._publish_top_and_online(top, online, new_signer)
                os.replace(pending_key, key_path)
            else:
                root = self._load_root(self._latest_root_version())
                for keyid in list(root.signed.roles[role].keyids):
                    root.signed.revoke_key(keyid, role)
                root.signed.add_key(new_signer.public_key, role)
                root.signed.version += 1
                root.signed.expires = self._expiry(Root.type)
                root.sign(self._signer(Root.type))
                if role == Root.type:
                    root.sign(new_signer, append=True)
                write_atomic(pending_key, new_signer.private_bytes, mode=KEY_FILE_MODE)
                self._write(root)
                os.replace(pending_key, key_path)
                if role != Root.type:
                    self._publish({role: self._load_current(role)})
        return next(info for info in self.key_info() if info.role == role)

    def refresh(self, margin: float = 0.5) -> list[str]:
        """Re-sign every online role with less than ``margin`` of its lifetime left.

        The running registry calls this; it never needs the offline keys (root and top-level
        targets are renewed by `resign_offline`). A re-signed role also re-signs the roles
        that point at it (→ snapshot → timestamp), so clients see a consistent chain. A
        repository of the old layout keeps every key online and re-signs all four roles.

        Returns:
            The roles that were re-signed (possibly empty).
        """
        with self.publish_lock:
            online = self.online_roles()
            refreshed: list[str] = []
            if Root.type in online:
                refreshed.extend(self._resign_root(margin))
            for role in online:
                if role != Root.type and self._expiring(self._load_current(role), role, margin):
                    refreshed.extend(self._publish({role: self._load_current(role)}))
                    break  # _publish re-signed this role and every role after it
            return refreshed

    def resign_offline(self, margin: float = 0.5) -> list[str]:
        """Re-sign root and the top-level ``targets`` if less than ``margin`` of their lifetime
        is left (run where the offline keys are; ``pitahaya keys resign``).

        Returns:
            The roles that were re-signed (possibly empty).

        Raises:
            SigningKeyError: an offline key needed is not here (nothing changed).
        """
        with self.publish_lock:
            refreshed = self._resign_root(margin)
            top = self._load_current(Targets.type)
            if self._expiring(top, Targets.type, margin):
                refreshed.extend(self._publish({Targets.type: top}))
            return refreshed

    # -- internals (callers hold the lock for anything that writes) -------------------------

    def _holder(self) -> str:
        """The role whose targets the registry's online key signs."""
        return ONLINE_ROLE if self.has_online_role() else Targets.type

    def _expiring(self, md: Metadata, role: str, margin: float) -> bool:
        return md.signed.expires - self._clock() < EXPIRY[role] * margin

    def _resign_root(self, margin: float) -> list[str]:
        root = self._load_root(self._latest_root_version())
        if not self._expiring(root, Root.type, margin):
            return []
        self._bump_and_sign(root, Root.type)
        self._write(root)
        return [Root.type]

    def _publish(self, changes: Mapping[str, Metadata], *, sign: bool = True) -> list[str]:
        """Write ``changes`` (by role name), then new snapshot and timestamp versions naming them.

        Files are written in chain order, so ``timestamp.json`` only points at complete files.
        """
        pending = self._chain(changes, sign=sign)
        for role, md in pending.items():
            self._write(md, role)
        return list(pending)

    def _chain(self, changes: Mapping[str, Metadata], *, sign: bool = True) -> dict[str, Metadata]:
        """``changes`` (by role name) plus new snapshot and timestamp versions naming them, in
        chain order (timestamp last), signed and not yet written.

        Each change is bumped and signed with its role's key unless ``sign`` is False (a
        publisher's already signed version). Snapshot or timestamp may be among the changes.

        Raises:
            RuntimeError: a staged publication is pending: publishing over it would fork the
                version chain (the registry recovers it when it starts or publishes next).
        """
        if self._journal.exists():
            raise RuntimeError(
                f"a signed publication is pending in {self.staging_dir}: start the registry (it completes "
                "or discards it against the database), then retry"
            )
        pending = dict(changes)
        if sign:
            for role, md in pending.items():
                self._bump_and_sign(md, role)
        if Timestamp.type not in pending:
            if Snapshot.type not in pending:
                snapshot = self._load_current(Snapshot.type)
                for role, md in pending.items():
                    snapshot.signed.meta[f"{role}.json"] = MetaFile(version=md.signed.version)
                self._bump_and_sign(snapshot, Snapshot.type)
                pending[Snapshot.type] = snapshot
            timestamp = self._load_current(Timestamp.type)
            timestamp.signed.snapshot_meta = MetaFile(version=pending[Snapshot.type].signed.version)
            self._bump_and_sign(timestamp, Timestamp.type)
            pending[Timestamp.type] = timestamp
        return pending

    @property
    def _journal(self) -> Path:
        return self.staging_dir / "publication.json"

    def _stage(self, pending: Mapping[str, Metadata], added: Mapping[str, TargetFile]) -> StagedPublication:
        """Write ``pending`` (from `_chain`) under ``staging/``, then the journal that makes it
        a staged publication; on failure remove what was written and re-raise."""
        names = [self._served_name(md, role) for role, md in pending.items()]
        targets = {path: target.hashes["sha256"] for path, target in added.items()}
        try:
            for name, md in zip(names, pending.values(), strict=True):
                write_atomic(self.staging_dir / name, md.to_bytes(), mode=PUBLIC_FILE_MODE)
            write_atomic(
                self._journal, json.dumps({"files": names, "targets": targets}).encode(), mode=PUBLIC_FILE_MODE
            )
        except BaseException:
            self._discard_staged()
            raise
        return StagedPublication(self, tuple(names), targets)

    def _apply_staged(self, staged: StagedPublication) -> None:
        for name in staged.files:
            with contextlib.suppress(FileNotFoundError):  # moved by an apply a crash interrupted
                os.replace(self.staging_dir / name, self.metadata_dir / name)
        fsync_dir(self.metadata_dir)
        self._journal.unlink()
        fsync_dir(self.staging_dir)

    def _discard_staged(self) -> None:
        """Journal first: once it is gone, leftover staged files are inert."""
        self._journal.unlink(missing_ok=True)
        for leftover in self.staging_dir.glob("*") if self.staging_dir.exists() else ():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def _publish_top_and_online(self, top: Metadata[Targets], online: Metadata[Targets], signer: Signer) -> None:
        """Publish a top-level targets that changes the online role's key with ``online`` (the
        role's next version) signed by the new key, which only the new top-level version trusts."""
        self._bump_and_sign(top, Targets.type)
        online.signed.expires = self._expiry(ONLINE_ROLE)
        online.sign(signer)
        self._publish({Targets.type: top, ONLINE_ROLE: online}, sign=False)

    def _bump_and_sign(self, md: Metadata, role: str) -> None:
        md.signed.version += 1
        md.signed.expires = self._expiry(role)
        md.sign(self._signer(role))

    def _expiry(self, role: str) -> datetime:
        """Expiry of a role signed now, in whole seconds as the TUF format stores it."""
        return self._clock().replace(microsecond=0) + EXPIRY[role]

    def _load_current(self, role: str) -> Metadata:
        """The live version of a role (top-level or the online role), via timestamp → snapshot."""
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

    def _load_delegated(self, name: str) -> Metadata[Targets] | None:
        """The live version of a delegated role, or None if snapshot lists none yet."""
        meta = self._load_current(Snapshot.type).signed.meta.get(f"{name}.json")
        if meta is None:
            return None
        return Metadata[Targets].from_file(str(self.metadata_dir / f"{meta.version}.{name}.json"))

    def _load_root(self, version: int) -> Metadata[Root]:
        return Metadata[Root].from_file(str(self.metadata_dir / f"{version}.root.json"))

    def _latest_root_version(self) -> int:
        versions = [
            int(m.group(1)) for p in self.metadata_dir.glob("*.root.json") if (m := _VERSIONED_ROOT_RE.match(p.name))
        ]
        if not versions:
            raise NotFoundError("the TUF repository is not initialized (no 1.root.json)")
        return max(versions)

    def _write(self, md: Metadata, role: str | None = None) -> None:
        """Write ``md`` under its served name; ``role`` names a delegated role (type ``targets``)."""
        write_atomic(self.metadata_dir / self._served_name(md, role), md.to_bytes(), mode=PUBLIC_FILE_MODE)

    @staticmethod
    def _served_name(md: Metadata, role: str | None = None) -> str:
        """``timestamp.json`` or ``<version>.<role>.json``; ``role`` names a delegated role."""
        role = role or md.signed.type
        return f"{role}.json" if role == Timestamp.type else f"{md.signed.version}.{role}.json"

    def _key_path(self, role: str) -> Path:
        """``keys/<role>.pem``; root's and targets' in ``offline_keys_dir`` (or ``keys/`` in
        a repository of the old layout that still keeps them there)."""
        if role in OFFLINE_ROLES:
            offline, legacy = self.offline_keys_dir / f"{role}.pem", self.keys_dir / f"{role}.pem"
            return legacy if legacy.exists() and not offline.exists() else offline
        return self.keys_dir / f"{role}.pem"

    def _load_or_create_signer(self, role: str) -> CryptoSigner:
        path = self._key_path(role)
        if path.exists():
            return load_private_key(path)
        signer = CryptoSigner.generate_ed25519()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, signer.private_bytes, mode=KEY_FILE_MODE)
        return signer

    def _trusted_keyids(self, role: str) -> list[str]:
        """The key ids the current metadata trusts for ``role`` (root's, or the online role's delegation)."""
        if role == ONLINE_ROLE:
            delegations = self._load_current(Targets.type).signed.delegations
            return list(delegations.roles[ONLINE_ROLE].keyids)  # type: ignore[union-attr,index]
        return list(self._load_root(self._latest_root_version()).signed.roles[role].keyids)

    def _signer(self, role: str) -> Signer:
        """The signer of a role, checked against the keys the current metadata trusts for it.

        Raises:
            SigningKeyError: the key file is missing, unsafe, or not trusted.
        """
        path = self._key_path(role)
        signer = load_private_key(path)
        if signer.public_key.keyid not in self._trusted_keyids(role):
            raise SigningKeyError(f"key {path} is not trusted for role {role!r} by the current metadata")
        return signer


def _online_delegation() -> DelegatedRole:
    """The online role's delegation: every release and package path not delegated before it."""
    return DelegatedRole(name=ONLINE_ROLE, keyids=[], threshold=1, terminating=False, paths=list(ONLINE_PATHS))


def _delegated_role_for(targets: Targets, path: str) -> DelegatedRole | None:
    """The delegated role of ``targets`` whose paths cover ``path``, if any."""
    if targets.delegations is None or targets.delegations.roles is None:
        return None
    return next((role for role in targets.delegations.roles.values() if role.is_delegated_path(path)), None)


def _target_file(path: str, content: TargetContent) -> TargetFile:
    if isinstance(content, bytes):
        return TargetFile.from_data(path, content)
    length, sha256 = content
    return TargetFile(length=length, hashes={"sha256": check_digest(sha256)}, path=path)
