"""The roles of the registry's TUF repository, their lifetimes and the names they are served under.

Trust (PEP 458/480): root (offline) trusts the keys of the top-level targets (offline),
snapshot and timestamp (online). The top-level ``targets`` holds no targets, only delegations,
in this order: ``publisher-<scene>`` (``packages/<scene>/*``, terminating, the publisher's keys)
for each delegated scene, then the online role ``registry`` (``releases/*/*`` and
``packages/*/*``). ngclient searches delegations in order, so a delegated scene's packages are
found in its publisher role only, everything else in ``registry``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from tuf.api.metadata import DelegatedRole, Metadata, Root, Snapshot, Targets, Timestamp

from pitahaya.registry.clock import Clock
from pitahaya.registry.errors import NotFoundError

#: The top-level roles, root first.
TOP_LEVEL_ROLES: tuple[str, ...] = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

#: The delegated role the running registry signs release documents and undelegated packages with.
ONLINE_ROLE = "registry"

#: What the online role may sign: every release document and package not delegated before it.
ONLINE_PATHS: tuple[str, ...] = ("releases/*/*", "packages/*/*")

#: Every role with a registry key, in trust order (``keys list`` shows them so).
KEY_ROLES: tuple[str, ...] = (Root.type, Targets.type, ONLINE_ROLE, Snapshot.type, Timestamp.type)

#: Roles whose keys the running registry never needs; keep them off the host.
OFFLINE_ROLES: tuple[str, ...] = (Root.type, Targets.type)

#: Roles the running registry signs, with keys under ``<tuf_dir>/keys/``.
ONLINE_ROLES: tuple[str, ...] = (ONLINE_ROLE, Snapshot.type, Timestamp.type)

#: How long each role's signature stays valid. Online roles are short-lived to bound freeze
#: attacks; the offline ones change only by an admin's hand.
EXPIRY: dict[str, timedelta] = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=365),
    ONLINE_ROLE: timedelta(days=90),
    Snapshot.type: timedelta(days=7),
    Timestamp.type: timedelta(days=1),
}

#: Prefix of the role a scene's packages are delegated to: ``publisher-<scene>``.
PUBLISHER_ROLE_PREFIX = "publisher-"

#: Metadata file names the repository serves; ``root.json`` means the newest root.
METADATA_NAME_RE = re.compile(
    r"^(?:[1-9][0-9]{0,9}\.(?:root|targets|snapshot|registry|publisher-[a-z][a-z0-9_]{0,63})|timestamp|root)\.json$"
)

_CONSISTENT_TARGET_RE = re.compile(r"^([0-9a-f]{64})\.(.+)$")


def expiry(clock: Clock, role: str) -> datetime:
    """Expiry of ``role`` signed now, in whole seconds as the TUF format stores it."""
    return clock().replace(microsecond=0) + EXPIRY[role]


def is_expiring(md: Metadata[Any], role: str, clock: Clock, margin: float) -> bool:
    """Whether less than ``margin`` of ``role``'s lifetime is left on ``md``."""
    return md.signed.expires - clock() < EXPIRY[role] * margin


def publisher_role(scene: str) -> str:
    """The delegated role that signs ``scene``'s packages."""
    return f"{PUBLISHER_ROLE_PREFIX}{scene}"


def online_delegation() -> DelegatedRole:
    """The online role's delegation: every release and package path not delegated before it."""
    return DelegatedRole(name=ONLINE_ROLE, keyids=[], threshold=1, terminating=False, paths=list(ONLINE_PATHS))


def delegated_role_for(targets: Targets, path: str) -> DelegatedRole | None:
    """The delegated role of ``targets`` whose paths cover ``path``, if any."""
    if targets.delegations is None or targets.delegations.roles is None:
        return None
    return next((role for role in targets.delegations.roles.values() if role.is_delegated_path(path)), None)


def served_name(md: Metadata[Any], role: str | None = None) -> str:
    """``timestamp.json`` or ``<version>.<role>.json``; ``role`` names a delegated role."""
    role = role or md.signed.type
    return f"{role}.json" if role == Timestamp.type else f"{md.signed.version}.{role}.json"


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
