"""The registry's role keys on this host, and which of them the current metadata trusts.

::

    <tuf_dir>/keys/{registry,snapshot,timestamp}.pem   online keys, mode 0600: the server signs with them
    <tuf_dir>/offline/{root,targets}.pem              offline keys: created here, then MOVE THEM OFF THE HOST

The running registry needs only the online keys; an admin runs the operations that need an
offline key (delegating a scene, rotating, re-signing root) where that key is.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Root, Targets

from pitahaya.client_runtime.files import write_atomic
from pitahaya.registry.clock import Clock
from pitahaya.registry.errors import SigningKeyError
from pitahaya.publisher.keys import KEY_FILE_MODE, load_private_key
from pitahaya.registry.tuf.roles import EXPIRY, KEY_ROLES, OFFLINE_ROLES, ONLINE_ROLE, ONLINE_ROLES
from pitahaya.registry.tuf.store import MetadataStore


def trusted_keyids(trusting: Root | Targets, role: str) -> list[str]:
    """The key ids ``trusting`` (root, or the top-level targets for the online role) trusts for ``role``."""
    if isinstance(trusting, Root):
        return list(trusting.roles[role].keyids)
    return list(trusting.get_delegated_role(role).keyids)


@dataclass(frozen=True, kw_only=True)
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
    location: Literal["online", "offline"]
    present: bool
    expires: str
    resign_due: bool


class KeyRing:
    """Where each role's key file lives, loading it only if the current metadata trusts it.

    Args:
        keys_dir: The online keys' folder.
        offline_keys_dir: Where the offline keys are created (and, on an admin's machine, kept).
        store: The served metadata, which says which keys are trusted.
        clock: The current time, for ``resign_due``.
    """

    def __init__(self, keys_dir: Path, offline_keys_dir: Path, store: MetadataStore, clock: Clock) -> None:
        self.keys_dir = keys_dir
        self.offline_keys_dir = offline_keys_dir
        self._store = store
        self._clock = clock

    def path(self, role: str) -> Path:
        """The key file of ``role``."""
        return (self.offline_keys_dir if role in OFFLINE_ROLES else self.keys_dir) / f"{role}.pem"

    def signer(self, role: str) -> Signer:
        """The signer of a role, checked against the keys the current metadata trusts for it.

        Raises:
            SigningKeyError: the key file is missing, unsafe, or not trusted.
        """
        path = self.path(role)
        signer = load_private_key(path)
        if signer.public_key.keyid not in self.trusted_keyids(role):
            raise SigningKeyError(f"key {path} is not trusted for role {role!r} by the current metadata")
        return signer

    def create(self, role: str) -> CryptoSigner:
        """The key of ``role``, generated (mode 0600) unless its file exists; for initialization."""
        path = self.path(role)
        if path.exists():
            return load_private_key(path)
        signer = CryptoSigner.generate_ed25519()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, signer.private_bytes, mode=KEY_FILE_MODE)
        return signer

    def stage_new(self, role: str, signer: CryptoSigner) -> Path:
        """Write a rotation's new key beside the current one (``<role>.pem.new``); `install` it
        once the metadata trusting it is written."""
        pending = self.path(role).with_name(f"{role}.pem.new")
        pending.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(pending, signer.private_bytes, mode=KEY_FILE_MODE)
        return pending

    def install(self, role: str, pending: Path) -> None:
        os.replace(pending, self.path(role))

    def trusted_keyids(self, role: str) -> list[str]:
        """The key ids the current metadata trusts for ``role`` (root's, or the online role's delegation)."""
        trusting = self._store.current(Targets.type if role == ONLINE_ROLE else Root.type).signed
        return trusted_keyids(trusting, role)

    def offline_keys_here(self) -> list[Path]:
        """The offline keys (root, top-level targets) present on this host: they should not be."""
        return [path for role in OFFLINE_ROLES if (path := self.path(role)).exists()]

    def check_online(self) -> None:
        """Raise unless every online role's key loads and is trusted (what serving needs).

        Raises:
            SigningKeyError: which key is missing, unsafe or untrusted.
        """
        for role in ONLINE_ROLES:
            self.signer(role)

    def info(self, margin: float = 0.5) -> list[KeyInfo]:
        """Key id, location, file mode, trust and expiry of every role's key.

        An offline key absent from this host is listed from the metadata that trusts it.

        Raises:
            NotFoundError: the repository is not initialized.
            SigningKeyError: an online key is missing, or a present key is readable by others
                or not a key.
        """
        return [self._info(role, margin) for role in KEY_ROLES]

    def _info(self, role: str, margin: float) -> KeyInfo:
        trusted_ids = self.trusted_keyids(role)
        path = self.path(role)
        expires: datetime = self._store.current(role).signed.expires
        present = role not in OFFLINE_ROLES or path.exists()  # an online key must be here: loading it says why not
        if present:
            public = load_private_key(path).public_key
            keyid, scheme, mode = public.keyid, public.scheme, f"{stat.S_IMODE(path.stat().st_mode):04o}"
        else:
            keyid, scheme, mode = trusted_ids[0], "ed25519", ""
        return KeyInfo(
            role=role,
            keyid=keyid,
            scheme=scheme,
            mode=mode,
            trusted=keyid in trusted_ids,
            path=str(path),
            location="offline" if role in OFFLINE_ROLES else "online",
            present=present,
            expires=expires.isoformat(),
            resign_due=expires - self._clock() < EXPIRY[role] * margin,
        )
