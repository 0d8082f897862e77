"""Which package answers on a device: a small state machine whose illegal transitions raise.

::

    DEFAULT ──install──> ACTIVE ──install newer──> ACTIVE (the old one becomes last-known-good)
       ^                  │  │
       └─ to_default ─────┘  ├─ demote: the active one failed for good; last-known-good takes over
          (kill switch,      └─ open_circuit: it failed with nothing to fall back on
           no release)             │
                             CIRCUIT_OPEN ──(breaker_reset_s later) half_open──> HALF_OPEN
                                                                                 │     │
                                            ACTIVE <──── close_circuit (trial ok) ┘     └ open_circuit (trial failed)

The runtime owns one, and calls it under its own lock; the state machine itself only keeps
the rules, so a bug that would, say, demote to a package that does not exist raises
`IllegalTransition` instead of quietly serving the default policy.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

Slot = TypeVar("Slot")


class Mode(enum.Enum):
    DEFAULT = "default"
    ACTIVE = "active"
    CIRCUIT_OPEN = "circuit_open"
    HALF_OPEN = "half_open"


class IllegalTransition(RuntimeError):
    """A transition the state machine does not have (a bug in the caller, never bad input)."""


class DeviceState(Generic[Slot]):
    """The active package, the last-known-good one, and whether the active one may answer.

    Attributes:
        mode: See `Mode`.
        active: The installed package (also while its circuit is open), or None in DEFAULT.
        last_good: The package that answered before the active one, kept as its fallback.
        reason: Why the default policy answers, in DEFAULT.
        open_until: In CIRCUIT_OPEN, the clock value at which a trial call is allowed.
    """

    def __init__(self, reason: str) -> None:
        self.mode = Mode.DEFAULT
        self.active: Slot | None = None
        self.last_good: Slot | None = None
        self.reason = reason
        self.open_until = 0.0

    def _require(self, transition: str, *modes: Mode) -> None:
        if self.mode not in modes:
            raise IllegalTransition(f"{transition} from {self.mode.value}")

    def restore(self, active: Slot | None, last_good: Slot | None) -> None:
        """Take the packages a restarted device verified before (only before anything else happened)."""
        self._require("restore", Mode.DEFAULT)
        if self.active is not None or self.last_good is not None:
            raise IllegalTransition("restore after packages were installed")
        self.active, self.last_good = active or last_good, last_good if active else None
        if self.active is not None:
            self.mode = Mode.ACTIVE

    def install(self, slot: Slot) -> None:
        """``slot`` answers from now on; the package it replaces becomes last-known-good."""
        if slot is self.active:
            raise IllegalTransition("install of the package already active")
        if self.active is not None:
            self.last_good = self.active
        elif self.last_good is slot:
            self.last_good = None
        self.active, self.mode, self.open_until = slot, Mode.ACTIVE, 0.0

    def to_default(self, reason: str) -> None:
        """The default policy answers (kill switch, no release); the active package is kept as last-known-good."""
        if self.active is not None:
            self.last_good = self.active
        self.active, self.mode, self.reason, self.open_until = None, Mode.DEFAULT, reason, 0.0

    def demote(self) -> Slot:
        """The active package failed for good: last-known-good takes over. Returns the demoted one."""
        self._require("demote", Mode.ACTIVE, Mode.CIRCUIT_OPEN, Mode.HALF_OPEN)
        if self.last_good is None:
            raise IllegalTransition("demote with no last-known-good package")
        demoted, self.active, self.last_good = self.active, self.last_good, None
        self.mode, self.open_until = Mode.ACTIVE, 0.0
        assert demoted is not None
        return demoted

    def open_circuit(self, until: float) -> None:
        """The active package keeps failing and nothing is left to fall back on: default policy until ``until``."""
        self._require("open_circuit", Mode.ACTIVE, Mode.HALF_OPEN)
        self.mode, self.open_until = Mode.CIRCUIT_OPEN, until

    def half_open(self) -> None:
        """The circuit's wait is over: the next call is a trial of the active package."""
        self._require("half_open", Mode.CIRCUIT_OPEN)
        self.mode, self.open_until = Mode.HALF_OPEN, 0.0

    def close_circuit(self) -> None:
        """The trial call succeeded: the active package answers again."""
        self._require("close_circuit", Mode.HALF_OPEN)
        self.mode = Mode.ACTIVE

    def drop_last_good(self) -> Slot | None:
        """Forget the last-known-good package (it failed too); returns it."""
        dropped, self.last_good = self.last_good, None
        return dropped
