"""One new version of the repository, built in memory on python-tuf's `Repository`.

`tuf.repository.Repository` supplies the edit protocol (`edit_targets`, `edit_root`, ...) and
the snapshot and timestamp updates (`do_snapshot`, `do_timestamp`, including re-signing a
role whose key changed); this subclass supplies storage: it reads the current versions from the
`MetadataStore` and keeps every new version in memory. Nothing is written until the caller
takes `changes` and writes or stages them, so an operation that cannot sign (a missing offline
key) fails before any file changes, and the chain is written in order, timestamp last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Targets
from tuf.repository import Repository

from pitahaya.registry.clock import Clock
from pitahaya.registry.tuf.keys import KeyRing
from pitahaya.registry.tuf.roles import expiry
from pitahaya.registry.tuf.store import MetadataStore


class Publication(Repository):
    """New versions of some roles over the current repository, with the snapshot and timestamp
    that name them.

    Args:
        store: The current (served) metadata.
        keys: Signs each role closed here with its trusted key...
        clock: ...and an expiry from now.
        signers: ...unless a role's signers are given here: a rotation signs with the new key,
            which only the new metadata trusts.
    """

    def __init__(
        self,
        store: MetadataStore,
        keys: KeyRing,
        clock: Clock,
        *,
        signers: Mapping[str, Sequence[Signer]] | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._signers = signers or {}
        self._current: dict[str, Metadata[Any]] = {}
        self._changes: dict[str, Metadata[Any]] = {}

    def open(self, role: str) -> Metadata[Any]:
        """A copy of ``role``'s newest version: this publication's, else the served one."""
        if role in self._changes:
            return deepcopy(self._changes[role])
        if role not in self._current:
            self._current[role] = self._store.current(role)
        return deepcopy(self._current[role])

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Record ``md`` as the served version + 1, expiring a role's lifetime from now and
        signed by the role's key (however often the role is edited in this publication)."""
        md.signed.version = self._current[role].signed.version + 1
        md.signed.expires = expiry(self._clock, role)
        md.signatures.clear()
        for signer in self._signers.get(role) or (self._keys.signer(role),):
            md.sign(signer, append=True)
        self._changes[role] = md

    def add_signed(self, role: str, md: Metadata[Targets]) -> None:
        """Record a version someone else signed (a publisher's), exactly as it is."""
        self._changes[role] = md

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        """The targets roles changed here, for `do_snapshot` (unchanged ones stay as listed)."""
        return {
            f"{role}.json": MetaFile(version=md.signed.version)
            for role, md in self._changes.items()
            if md.signed.type == Targets.type
        }

    @property
    def snapshot_info(self) -> MetaFile:
        return MetaFile(version=self.open(Snapshot.type).signed.version)

    def finish(self, *, snapshot: bool = False, timestamp: bool = False) -> dict[str, Metadata[Any]]:
        """Snapshot and timestamp the changes; returns every new version by role, in chain order.

        Args:
            snapshot: Sign a new snapshot even if no targets role changed (its expiry is near,
                or its key changed).
            timestamp: Sign a new timestamp even if the snapshot did not change.
        """
        self.do_snapshot(force=snapshot)
        self.do_timestamp(force=timestamp)
        return dict(self._changes)
