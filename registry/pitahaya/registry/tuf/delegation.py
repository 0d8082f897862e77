"""Scenes delegated to their publishers' keys: who may sign a scene's packages, and signed pushes.

``pitahaya keys delegate`` (an admin, where the offline ``targets`` key is) delegates
``packages/<scene>/*`` to the role ``publisher-<scene>``; from then on only the publisher's
keys sign that scene's packages and the registry's online key refuses to. A push carries the
publisher's signatures over the role's next version (`pitahaya.publisher.wire`): the registry
rebuilds that version with the same `next_delegated_metadata`, checks the signatures against
the delegation, and stages it exactly as signed.
"""

from __future__ import annotations

from collections.abc import Sequence

from securesystemslib.signer import Key
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, TargetFile, Targets

from pitahaya.publisher.wire import PublisherSignatures, next_delegated_metadata
from pitahaya.registry.locks import PublishLock
from pitahaya.registry.clock import Clock
from pitahaya.registry.errors import InvalidArgumentError, PublisherSignatureError, StaleDelegationError
from pitahaya.registry.tuf.keys import KeyRing
from pitahaya.registry.tuf.publication import Publication
from pitahaya.registry.tuf.roles import ONLINE_ROLE, delegated_role_for, publisher_role
from pitahaya.registry.tuf.staging import StagedPublication, Staging
from pitahaya.registry.tuf.store import MetadataStore


class PublisherDelegations:
    """The publisher delegations of one repository. Every write holds ``lock`` (the
    repository's publish lock) and re-reads the current state."""

    def __init__(self, store: MetadataStore, keys: KeyRing, staging: Staging, lock: PublishLock, clock: Clock) -> None:
        self._store = store
        self._keys = keys
        self._staging = staging
        self._lock = lock
        self._clock = clock

    def of(self, scene: str) -> tuple[DelegatedRole, dict[str, Key]] | None:
        """The scene's publisher delegation and its public keys by key id, or None if the
        registry's online key signs the scene's packages."""
        delegations = self._store.current(Targets.type).signed.delegations
        if delegations is None or delegations.roles is None:
            return None
        role = delegations.roles.get(publisher_role(scene))
        if role is None:
            return None
        return role, {keyid: delegations.keys[keyid] for keyid in role.keyids}

    def metadata(self, scene: str) -> Metadata[Targets] | None:
        """The current signed version of the scene's publisher role; None before its first push."""
        return self._store.targets(publisher_role(scene))

    def delegate(self, scene: str, public_keys: Sequence[Key], threshold: int = 1) -> DelegatedRole:
        """Delegate ``packages/<scene>/*`` to ``publisher-<scene>`` trusting ``public_keys``.

        Re-delegating a scene replaces its keys and threshold. The delegation is terminating
        and listed before the online role, so a device never looks elsewhere for that scene's
        packages. Signs a new top-level targets version with the offline ``targets`` key.

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
        with self._lock:
            self._store.root_version()  # NotFoundError first when nothing is initialized
            self._staging.check_clear()
            self._keys.signer(Targets.type)  # then, without the offline key, say so before anything else
            online = self._store.current(ONLINE_ROLE).signed.targets
            signed_online = sorted(path for path in online if path.startswith(f"packages/{scene}/"))
            if signed_online:
                raise InvalidArgumentError(
                    f"scene {scene} already has {len(signed_online)} package(s) signed by the registry's online "
                    f"key ({signed_online[0]}, ...); delegate a scene before its first push"
                )
            publication = Publication(self._store, self._keys, self._clock)
            with publication.edit_targets() as top:
                if top.delegations is None:
                    top.delegations = Delegations(keys={}, roles={})
                roles = top.delegations.roles
                assert roles is not None  # this repository never writes succinct roles
                if name in roles:
                    for keyid in list(roles[name].keyids):
                        top.revoke_key(keyid, name)
                roles[name] = DelegatedRole(
                    name=name, keyids=[], threshold=threshold, terminating=True, paths=[f"packages/{scene}/*"]
                )
                roles[ONLINE_ROLE] = roles.pop(ONLINE_ROLE)  # ngclient searches in order: the catch-all goes last
                for key in unique.values():
                    top.add_key(key, name)
                delegated = roles[name]
            self._store.write(publication.finish())
            return delegated

    def verify(self, scene: str, target: TargetFile, signed: PublisherSignatures) -> Metadata[Targets]:
        """The scene role's next version adding ``target``, once ``signed`` proves the publisher signed it.

        Rebuilds the version with `next_delegated_metadata`, so the signatures cover exactly
        the current targets plus ``target``, and checks them against the delegation's keys and
        threshold. Hold the publish lock from here through `stage`.

        Raises:
            InvalidArgumentError: the scene is not delegated (push without signatures).
            PublisherSignatureError: ``target`` lies outside the delegation, the version is
                expired, or the signatures do not meet the threshold.
            StaleDelegationError: the signed version is not the current version + 1.
        """
        name = publisher_role(scene)
        with self._lock:
            top = self._store.current(Targets.type)
            role = delegated_role_for(top.signed, target.path)
            if role is None or role.name != name:
                if self.of(scene) is None:
                    raise InvalidArgumentError(f"scene {scene} is not delegated to publisher keys; push unsigned")
                raise PublisherSignatureError(f"{target.path} lies outside the delegation of {name}")
            new = next_delegated_metadata(self.metadata(scene), target, signed.expires)
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

    def stage(self, scene: str, verified: Metadata[Targets]) -> StagedPublication:
        """Stage a version `verify` returned, exactly as the publisher signed it, with new
        snapshot and timestamp versions; the caller holds the publish lock.

        Raises:
            OSError: the staged files could not be written, e.g. a full disk (nothing was changed).
        """
        name = publisher_role(scene)
        with self._lock:
            current = self.metadata(scene)
            before = current.signed.targets if current is not None else {}
            added = {path: t for path, t in verified.signed.targets.items() if before.get(path) != t}
            publication = Publication(self._store, self._keys, self._clock)
            publication.add_signed(name, verified)
            return self._staging.stage(publication.finish(), added)

    def publish(self, scene: str, verified: Metadata[Targets]) -> None:
        """`stage` and apply at once: for callers with no database rows to commit."""
        with self._lock:
            self.stage(scene, verified).apply()
