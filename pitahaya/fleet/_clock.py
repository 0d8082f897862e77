"""The compressed clock every process of a fleet run shares."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class CompressedClock:
    """Simulated seconds since the start: real seconds since the start times ``compression``.

    It crosses to the worker processes by pickling: `time.monotonic` is one system-wide clock
    on Linux, so every process reads the same simulated time.

    Attributes:
        compression: Simulated seconds per real second.
        start_monotonic: `time.monotonic` at simulated second 0.
        start_wall: `time.time` at simulated second 0 (to place the registry's timestamps).
    """

    compression: float
    start_monotonic: float
    start_wall: float

    @classmethod
    def started(cls, compression: float) -> CompressedClock:
        if not compression > 0:
            raise ValueError(f"compression must be positive, got {compression!r}")
        return cls(compression, time.monotonic(), time.time())

    def now(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self.start_monotonic) * self.compression

    def real_seconds(self, simulated_s: float) -> float:
        """Real seconds that ``simulated_s`` simulated seconds take."""
        return simulated_s / self.compression

    def at_wall(self, wall_ts: float) -> float:
        """Simulated time of a wall-clock timestamp (seconds since the epoch)."""
        return (wall_ts - self.start_wall) * self.compression
