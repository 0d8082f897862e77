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
`TufRepository.rotate_key` replaces one role's key with a single new root version.

Delegation per scene (PEP 458/480 style): `TufRepository.delegate` makes the top-level
``targets`` delegate ``packages/<scene>/*`` (terminating) to the role ``publisher-<scene>``,
trusting publisher public keys with a threshold. From then on only the publisher's keys sign
that scene's packages: a push carries their signatures over the role's next version, which
`next_delegated_metadata` determines (current version + 1, the current targets plus the new
archive's entry), and `TufRepository.publish_delegated` rebuilds that version, verifies the
signatures against the delegation, then writes it and re-signs snapshot and timestamp. The
registry's online ``targets`` key keeps signing release documents and undelegated scenes,
and refuses to sign anything under a delegated path::

    <tuf_dir>/metadata/N.publisher-<scene>.json   signed by the scene's publisher key(s)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, UTC
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
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

from pitahaya.registry._files import FileLock, atomic_write
from pitahaya.registry.key_files import KEY_FILE_MODE, load_private_key
from pitahaya.registry.blobs import check_digest
from pitahaya.registry.errors import (
    InvalidArgumentError,
    NotFoundError,
    PublisherSignatureError,
    StaleDelegationError,
)

ROLES: tuple[str, ...] = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

#: How long each role's signature stays valid. Short-lived roles bound freeze attacks.
EXPIRY: dict[str, timedelta] = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=90),
    Snapshot.type: timedelta(days=7),
    Timestamp.type: timedelta(days=1),
}

#: A publisher role's signature: long, because only the publisher can renew it (by pushing).
DELEGATED_EXPIRY = timedelta(days=365)

#: Prefix of the role a scene's packages are delegated to: ``publisher-<scene>``.
PUBLISHER_ROLE_PREFIX = "publisher-"

#: Metadata file names the repository serves; ``root.json`` means the newest root.
METADATA_NAME_RE = re.compile(
    r"^(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot|publisher-[a-z][a-z0-9_]{0,63})|timestamp|root)\.json$"
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
        mode: File mode, octal text (``0600``).
        trusted: Whether the newest root lists this key for the role.
        path: The key file.
    """

    role: str
    keyid: str
    scheme: str
    mode: str
    trusted: bool
    path: str


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

    def key_info(self) -> list[KeyInfo]:
        """Role, key id, scheme, file mode and trust of every role's key.

        Raises:
            NotFoundError: the repository is not initialized.
            SigningKeyError: a key is missing, readable by others, or not a key.
        """
        root = self._load_root(self._latest_root_version()).signed
        infos = []
        for role in ROLES:
            path = self._key_path(role)
            public = load_private_key(path).public_key
            mode = f"{stat.S_IMODE(path.stat().st_mode):04o}"
            trusted = public.keyid in root.roles[role].keyids
            infos.append(KeyInfo(role, public.keyid, public.scheme, mode, trusted, str(path)))
        return infos

    def delegation(self, scene: str) -> tuple[DelegatedRole, dict[str, Key]] | None:
        """The scene's publisher delegation and its public keys by key id, or None if the
        online ``targets`` key signs the scene's packages."""
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

        Raises:
            PublisherSignatureError: a path lies in a scene delegated to publisher keys; the
                online key never signs those (nothing was changed).
        """
        if not targets:
            raise ValueError("add_targets needs at least one target")
        with self.publish_lock:
            current = self._load_current(Targets.type)
            for path, content in targets.items():
                if (role := _delegated_role_for(current.signed, path)) is not None:
                    raise PublisherSignatureError(
                        f"{path} is delegated to {role.name}: only that role's publisher keys may sign it"
                    )
                current.signed.targets[path] = _target_file(path, content)
            self._publish_from(current)

    def delegate(self, scene: str, public_keys: Sequence[Key], threshold: int = 1) -> DelegatedRole:
        """Delegate ``packages/<scene>/*`` to the role ``publisher-<scene>`` trusting ``public_keys``.

        Re-delegating a scene replaces its keys and threshold. The delegation is terminating:
        a device never looks elsewhere for that scene's packages. Signs a new targets version
        with the online ``targets`` key (an admin action on the registry host).

        Raises:
            NotFoundError: the repository is not initialized.
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
            current = self._load_current(Targets.type)
            signed = current.signed
            online = sorted(path for path in signed.targets if path.startswith(f"packages/{scene}/"))
            if online:
                raise InvalidArgumentError(
                    f"scene {scene} already has {len(online)} package(s) signed by the registry's online key "
                    f"({online[0]}, ...); delegate a scene before its first push"
                )
            if signed.delegations is None:
                signed.delegations = Delegations(keys={}, roles={})
            roles = signed.delegations.roles
            assert roles is not None  # set above, and this repository never writes succinct roles
            if name in roles:
                for keyid in list(roles[name].keyids):
                    signed.revoke_key(keyid, name)
            roles[name] = DelegatedRole(name=name, keyids=[], threshold=threshold, terminating=True, paths=[pattern])
            for key in unique.values():
                signed.add_key(key, name)
            self._publish_from(current)
            return roles[name]

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
        """Write a version `verify_delegated` returned, then re-sign snapshot and timestamp."""
        name = publisher_role(scene)
        with self.publish_lock:
            self._write(verified, name)
            snapshot = self._load_current(Snapshot.type)
            snapshot.signed.meta[f"{name}.json"] = MetaFile(version=verified.signed.version)
            self._publish_from(snapshot)

    def rotate_key(self, role: str) -> KeyInfo:
        """Replace ``role``'s key; devices follow through one new root version (N+1).

        Root N+1 trusts the new key instead of the old one and is signed by the current root
        key (and by the new one when root itself rotates), so a device holding root N verifies
        it. Then the roles from ``role`` down the chain (targets → snapshot → timestamp) are
        re-signed with the now-current keys; root is not bumped again.

        Returns:
            The new key's info.

        Raises:
            ValueError: ``role`` is not a TUF role.
            NotFoundError: the repository is not initialized.
            SigningKeyError: a key needed for signing is missing or unsafe (nothing changed).
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        with self.publish_lock:
            root = self._load_root(self._latest_root_version())
            signers = {each: load_private_key(self._key_path(each)) for each in ROLES}  # refuse before changing
            new_signer = CryptoSigner.generate_ed25519()
            for keyid in list(root.signed.roles[role].keyids):
                root.signed.revoke_key(keyid, role)
            root.signed.add_key(new_signer.public_key, role)
            root.signed.version += 1
            root.signed.expires = self._expiry(Root.type)
            root.sign(signers[Root.type])
            if role == Root.type:
                root.sign(new_signer, append=True)
            key_path = self._key_path(role)
            pending_key = key_path.with_name(key_path.name + ".new")
            atomic_write(pending_key, new_signer.private_bytes, mode=KEY_FILE_MODE)
            self._write(root)
            os.replace(pending_key, key_path)
            if role != Root.type:
                self._publish_from(self._load_current(role))
        return next(info for info in self.key_info() if info.role == role)

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
        role = role or md.signed.type
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
