"""One simulated device: a real `Runtime`, its telemetry reporter and the user it plays.

Nothing here waits or starts a thread: the worker's scheduler calls `SimDevice.poll`,
`SimDevice.step` and `SimDevice.flush` when the compressed clock says so. The device notes
each change of the version it runs (an install at a poll, or the circuit breaker demoting a
failing package during a step) with the simulated time it took effect.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Sequence

from pitahaya.client_runtime import Runtime, TelemetryReporter, UpdateEvent
from pitahaya.simulation import HostStep, Session, host_steps

from pitahaya.fleet.feeds import endless_sessions


class SimDevice:
    """A device of the fleet.

    Args:
        runtime: Its runtime (never started: the scheduler polls for it).
        reporter: Its telemetry reporter (never started: the scheduler flushes it).
        sessions: The user's sittings (with history), played again and again.
        decisions: Where decisions are counted by (package version, reason), shared per process.
    """

    __slots__ = ("_decisions", "_steps", "failures", "reporter", "runtime", "transitions", "version")

    def __init__(
        self,
        runtime: Runtime,
        reporter: TelemetryReporter,
        sessions: Sequence[Session],
        decisions: Counter[tuple[str | None, str]],
    ) -> None:
        self.runtime = runtime
        self.reporter = reporter
        self._decisions = decisions
        self._steps = itertools.chain.from_iterable(host_steps(runtime, batch) for batch in endless_sessions(sessions))
        #: Version running now (None: the default policy).
        self.version: str | None = None
        #: (simulated time, version) each time the version it runs changed.
        self.transitions: list[tuple[float, str | None]] = []
        #: Failed update checks in a row (the runtime's backoff reads it).
        self.failures = 0

    @property
    def device_id(self) -> str:
        return self.runtime.device_id

    def poll(self, at: float) -> tuple[UpdateEvent, float]:
        """Check for an update as the runtime's update thread would; returns the event and its real duration.

        A new version counts from ``at`` plus the check's real duration (HTTP, TUF
        verification, package load and self-test are not compressed).
        """
        started = time.perf_counter()
        event = self.runtime.refresh()
        took = time.perf_counter() - started
        self.failures = self.failures + 1 if event.outcome == "failed" else 0
        self._note(at + took)
        return event, took

    def step(self, at: float) -> HostStep:
        """Play the next view: predict, record, observe (`host_steps`)."""
        step = next(self._steps)
        decision = step.decision
        self._decisions[(decision.package_version, decision.reason)] += 1
        self._note(at)
        return step

    def flush(self) -> bool:
        """Send the telemetry gathered since the last flush (one POST); True when the registry took it."""
        return self.reporter.flush()

    def _note(self, at: float) -> None:
        version = self.runtime.active_version
        if version != self.version:
            self.version = version
            self.transitions.append((at, version))
