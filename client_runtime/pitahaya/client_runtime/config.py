"""The runtime's knobs: one frozen dataclass whose defaults carry their units (`RuntimeConfig`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pitahaya.client_runtime.containment import Isolation, Limits


@dataclass(frozen=True)
class RuntimeConfig:
    """Knobs of the runtime, with units in their names.

    Attributes:
        history_views: Recent views kept to rebuild feature state when a package is swapped in.
        breaker_failures: Failed calls (errors, timeouts, a lost worker) among a package's last
            ``breaker_window`` calls that take it out of service: a sustained failure rate
            (by default 5 in 20) does, a single timeout never does.
        breaker_window: How many of a package's most recent calls the breaker counts over.
        breaker_reset_s: With no last-known-good, how long the default policy is used
            before the failing package is tried again (half-open).
        pending_outcomes: How many predictions wait for `Runtime.observe` (oldest dropped first).
        refresh_interval_s: Time between update checks once started.
        refresh_jitter: Each delay is scaled by a random factor in ``[1 - j, 1 + j]``, so a
            fleet does not poll in lockstep.
        backoff_base_s: Delay after the first failed check; doubles with each further failure.
        backoff_max_s: Longest delay between checks after failures.
        isolation: Where package code runs: ``process`` (default), ``thread`` (trusted
            publishers) or ``inline`` (your own code); see `pitahaya.client_runtime.containment`.
        limits: Deadlines and resource limits of package code; ``limits.max_call_timeout_s``
            caps what a scene may ask for.
    """

    history_views: int = 512
    breaker_failures: int = 5
    breaker_window: int = 20
    breaker_reset_s: float = 60.0
    pending_outcomes: int = 1024
    refresh_interval_s: float = 600.0
    refresh_jitter: float = 0.1
    backoff_base_s: float = 15.0
    backoff_max_s: float = 3600.0
    isolation: Isolation = "process"
    limits: Limits = field(default_factory=Limits)

    def refresh_delay(self, consecutive_failures: int, rng: random.Random) -> float:
        """Seconds until the next update check after ``consecutive_failures`` failed ones."""
        if consecutive_failures <= 0:
            base = self.refresh_interval_s
        else:
            base = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (consecutive_failures - 1))
        return base * (1.0 + self.refresh_jitter * rng.uniform(-1.0, 1.0))
