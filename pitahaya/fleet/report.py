"""Turn what the devices noted into the run's figures: adoption, exposure, request latency.

Adoption of a release by a device is the simulated time from the release to the end of the
update check that installed it: the check's scheduled (simulated) offset plus its real
duration (`pitahaya.fleet.device.SimDevice.poll`). ``adoption_pXX_s`` is the time by which XX %
of the whole fleet had adopted (nearest rank; None when fewer ever did). Exposure to a version
is the share of the fleet running it; ``exposure_max`` is its peak over the run, a fraction in
[0, 1], and ``exposed_share`` the share of devices that ran it at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: (simulated time, version) changes of one device, in time order.
Transitions = Sequence[tuple[float, str | None]]


def adoption_offsets(
    transitions: Sequence[Transitions], version: str, released_at: Sequence[float]
) -> tuple[list[float | None], int]:
    """Per device, simulated seconds from the release to running ``version`` (None: never).

    Args:
        transitions: Each device's version changes.
        version: The released version.
        released_at: When the release happened, per device, on the clock of its transitions.

    Returns:
        The offsets, and how many were clamped to 0 (a change noted before the release: not
        expected, since workers are paused around a release; counted to show it).
    """
    offsets: list[float | None] = []
    clamped = 0
    for changes, release in zip(transitions, released_at, strict=True):
        at = next((t for t, v in changes if v == version and t >= release - 1e-9), None)
        if at is None and any(v == version for _, v in changes):
            clamped += 1
            at = release
        offsets.append(None if at is None else at - release)
    return offsets, clamped


def time_to_share(offsets: Sequence[float | None], share: float) -> float | None:
    """When ``share`` of all devices had adopted (nearest rank over the whole fleet), or None."""
    if not offsets:
        return None
    done = sorted(o for o in offsets if o is not None)
    rank = max(1, math.ceil(share * len(offsets)))
    return done[rank - 1] if rank <= len(done) else None


def exposure(transitions: Sequence[Transitions], version: str, *, since: float = -math.inf) -> tuple[float, float]:
    """Peak share of the fleet running ``version`` at once, and share that ran it at all (after ``since``)."""
    if not transitions:
        return 0.0, 0.0
    events: list[tuple[float, int]] = []
    exposed = 0
    for changes in transitions:
        running_since: float | None = None
        ran = False
        for at, v in changes:
            if v == version and running_since is None:
                running_since = at
            elif v != version and running_since is not None:
                if at >= since:
                    events += [(max(running_since, since), 1), (at, -1)]
                    ran = True
                running_since = None
        if running_since is not None:
            events.append((max(running_since, since), 1))
            ran = True
        exposed += ran
    peak = running = 0
    for _, change in sorted(events):  # at equal times the -1 sorts first: a swap is not a double count
        running += change
        peak = max(peak, running)
    return peak / len(transitions), exposed / len(transitions)


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded for the report (nested dicts and lists too)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
