"""The registry's TUF repository: signs what devices may install.

Devices trust nothing but metadata signed by the keys in ``root``; every package archive and
release document is a TUF *target* whose length and sha256 the signed metadata pins. The running
registry holds only online keys: it signs releases and undelegated packages, but it cannot change
who a scene is delegated to, because that takes a new top-level ``targets`` signed by the
offline key (`PublisherDelegations.delegate`, `TufRepository.rotate_key` and
`TufRepository.resign_offline`, run by an admin where that key is).

Modules: ``roles`` (names, lifetimes, served file names), ``store`` (the served files),
``keys`` (the role keys on this host), ``publication`` (new versions, on python-tuf's
`tuf.repository.Repository`), ``staging`` (two-phase publication), ``delegation`` (publisher
delegations and signed pushes), ``repository`` (`TufRepository`, which composes them).
"""

from pitahaya.registry.tuf.delegation import PublisherDelegations
from pitahaya.registry.tuf.keys import KeyInfo
from pitahaya.registry.tuf.repository import TargetContent, TufRepository
from pitahaya.registry.tuf.roles import (
    KEY_ROLES,
    OFFLINE_ROLES,
    ONLINE_ROLE,
    ONLINE_ROLES,
    TOP_LEVEL_ROLES,
    parse_consistent_target,
    publisher_role,
)
from pitahaya.registry.tuf.staging import StagedPublication

__all__ = [
    "KEY_ROLES",
    "OFFLINE_ROLES",
    "ONLINE_ROLE",
    "ONLINE_ROLES",
    "TOP_LEVEL_ROLES",
    "KeyInfo",
    "PublisherDelegations",
    "StagedPublication",
    "TargetContent",
    "TufRepository",
    "parse_consistent_target",
    "publisher_role",
]
