"""How much a package may take: deadlines, memory and CPU, and the isolation mode that bounds it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

#: Where publisher code runs:
#:
#: - ``process`` (default): a worker process per loaded package, killable, with OS limits on
#:   memory, CPU time, file writes, network and signals (`pitahaya.client_runtime.containment.sandbox`).
#: - ``thread``: a worker thread per loaded package, with the same deadlines but no memory
#:   bound and no way to stop a stuck call (it is abandoned); for publishers you trust.
#: - ``inline``: on the caller's thread, no deadline; for your own code (training, the packager,
#:   the simulator), never for code from a registry.
Isolation = Literal["process", "thread", "inline"]
ISOLATION_MODES: tuple[Isolation, ...] = ("process", "thread", "inline")


def checked_isolation(mode: str) -> Isolation:
    """``mode`` if it names an isolation mode, else ValueError (a misconfigured host, caught at once)."""
    if mode not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {mode!r}")
    return mode


#: Policy key (in ``scene.toml``'s ``[policy]``, shipped in the manifest) for a scene's per-call deadline.
CALL_TIMEOUT_KEY = "call_timeout_ms"


@dataclass(frozen=True)
class Limits:
    """The budgets of one loaded package. Units are in the names.

    Attributes:
        call_timeout_s: Deadline of one ``predict`` (features + model) when the scene does not
            set one. Generous on purpose: a GC pause or a busy phone must not cost a good
            package; the packager's own p99 budget is far tighter.
        max_call_timeout_s: The ceiling on a scene's own deadline (``call_timeout_ms``).
        load_timeout_s: Deadline of loading the package: import, model load, warm-up, self-test
            and the replay of the device's recent views. Our own interpreter start is not
            counted (it is bounded by ``start_timeout_s``).
        start_timeout_s: How long a worker process may take to start (ours, not publisher code).
        kill_after_s: A call abandoned at its deadline that is still running this much later
            gets its worker killed and restarted (``process``) or abandoned (``thread``).
        memory_bytes: Address space a worker process may add to what it had once the runtime
            was imported: a package allocating more gets ``MemoryError`` or dies, never the host.
        cpu_s: CPU seconds a worker process may use while loading (a backstop for a host whose
            own timers stop, e.g. a suspended app); lifted once the package is serving.
        file_bytes: Largest file a worker process may write inside its own folder.
        max_restarts: Consecutive worker restarts without one successful call before the
            package is left out of service.
    """

    call_timeout_s: float = 0.05
    max_call_timeout_s: float = 0.25
    load_timeout_s: float = 10.0
    start_timeout_s: float = 60.0
    kill_after_s: float = 1.0
    memory_bytes: int = 512 * 1024 * 1024
    cpu_s: float = 30.0
    file_bytes: int = 16 * 1024 * 1024
    max_restarts: int = 3

    def __post_init__(self) -> None:
        for name in (
            "call_timeout_s",
            "max_call_timeout_s",
            "load_timeout_s",
            "start_timeout_s",
            "kill_after_s",
            "cpu_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"Limits.{name} must be a positive finite number of seconds, got {value!r}")
        if self.call_timeout_s > self.max_call_timeout_s:
            raise ValueError("Limits.call_timeout_s must not exceed max_call_timeout_s")
        if self.memory_bytes <= 0 or self.file_bytes <= 0 or self.max_restarts < 0:
            raise ValueError("Limits.memory_bytes and file_bytes must be positive, max_restarts >= 0")

    def for_policy(self, policy: Mapping[str, Any]) -> Limits:
        """These limits with the scene's own per-call deadline, capped at ``max_call_timeout_s``.

        An invalid value (not a positive finite number) is ignored: the ceiling applies.
        """
        raw = policy.get(CALL_TIMEOUT_KEY)
        if isinstance(raw, bool):
            return self
        try:
            asked = float(raw) / 1000.0 if raw is not None else math.nan
        except (TypeError, ValueError):
            return self
        if not 0 < asked < math.inf:
            return self
        return replace(self, call_timeout_s=min(asked, self.max_call_timeout_s))
