"""A worker process of the fleet: many devices driven by one scheduler loop on the compressed clock.

`run_worker` is the process's entry point. It builds its devices, then runs one loop over a
heap of due events (no thread per device):

- **poll** (`SimDevice.poll`): the runtime's update check; the next one is due after the
  check's real duration plus `RuntimeConfig.refresh_delay` (the interval with jitter, backoff
  after failures), in simulated seconds;
- **step** (`SimDevice.step`): the next view plays; the one after is due when the user has
  watched it (its real watch time, simulated), or after an idle gap when the sitting ended;
- **flush** (`SimDevice.flush`): one telemetry batch, every ``flush_interval_s`` simulated.

Each device starts (first poll, first view) at a random moment of the first poll interval,
as devices of a real fleet were switched on at different times. When the loop falls behind
(a burst of installs on a busy machine), events run late but in order and keep their
scheduled simulated times, so the figures are the fleet's, not the host's; the worker reports
how late it ran. Every ``status_interval_s`` (real) it sends the parent how many of its devices
run each version. The parent pauses the loop around a release (``pause`` / ``resume``) and
learns the loop's simulated time then, so a check runs clearly before or after the release
even when the loop is behind. On ``stop`` it sends every reporter's last batch, closes the
runtimes and sends its results.

Runtimes run package code inline (``isolation="inline"``): a sandboxed worker process per
package and device (the default on a real device) would mean a thousand processes, which a
2-core machine cannot host. Decisions are the same in every isolation mode; only what a
device pays per call differs (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import heapq
import random
import signal
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pitahaya.client_runtime import PackageUpdater, Runtime, RuntimeConfig, TelemetryReporter
from pitahaya.simulation import Session

from pitahaya.fleet._clock import CompressedClock
from pitahaya.fleet._http import RequestLog, TimedFetcher, TimedPool
from pitahaya.fleet.device import SimDevice

_POLL, _STEP, _FLUSH = 0, 1, 2
#: Real seconds between two looks at the parent's commands.
_COMMAND_INTERVAL_S = 0.02
#: Simulated seconds between two views of a sitting, besides the watch time (the swipe).
SWIPE_S = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker process runs (pickled to it).

    Attributes:
        index: Worker number.
        registry_url: The registry's base URL.
        token: Client token of the devices (telemetry).
        trusted_root: TUF root metadata the devices start from.
        scene: Scene name.
        cache_root: Folder holding one cache folder per device.
        device_ids: The devices it hosts.
        feeds: Each device's sittings, in the same order.
        clock: The run's compressed clock.
        poll_interval_s: Simulated seconds between update checks (``refresh_interval_s``).
        jitter: ``refresh_jitter`` of the devices.
        flush_interval_s: Simulated seconds between telemetry batches of a device.
        idle_gap_s: Mean simulated seconds a user pauses between sittings (exponential); 0: none.
        seed: Seed of start times, jitter and idle gaps.
        status_interval_s: Real seconds between status messages to the parent.
    """

    index: int
    registry_url: str
    token: str
    trusted_root: bytes
    scene: str
    cache_root: Path
    device_ids: tuple[str, ...]
    feeds: tuple[tuple[Session, ...], ...]
    clock: CompressedClock
    poll_interval_s: float
    jitter: float
    flush_interval_s: float
    idle_gap_s: float
    seed: int
    status_interval_s: float = 0.5


def run_worker(spec: WorkerSpec, conn: Connection) -> None:
    """Process entry point: run the devices until the parent says stop; send ("done", results) or ("error", text)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us in order
    try:
        message: tuple[str, Any] = ("done", _Worker(spec, conn).run())
    except (BrokenPipeError, EOFError):  # the parent is gone: nobody to tell
        return
    except BaseException:
        message = ("error", f"worker {spec.index}:\n{traceback.format_exc()}")
    try:
        conn.send(message)
    except OSError:  # the parent stopped listening (it is stopping everything)
        pass
    finally:
        conn.close()


def memory_kib() -> dict[str, int]:
    """This process's resident memory now and at its peak (KiB, from /proc; empty elsewhere)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


class _Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.clock = spec.clock
        self.rng = random.Random(spec.seed * 1_000_003 + spec.index)
        self.config = RuntimeConfig(
            refresh_interval_s=spec.poll_interval_s, refresh_jitter=spec.jitter, isolation="inline"
        )
        self.requests = RequestLog()
        self.decisions: Counter[tuple[str | None, str]] = Counter()
        self.refreshes: Counter[str] = Counter()
        self.refresh_real_s: dict[str, list[float]] = {}
        self.memory_before = memory_kib()
        fetcher = TimedFetcher(self.requests)
        pool = TimedPool(self.requests, maxsize=4)
        self.devices = [
            self._device(device_id, feed, fetcher, pool)
            for device_id, feed in zip(spec.device_ids, spec.feeds, strict=True)
        ]
        self.steps = 0
        self.flushes = 0
        self.max_lag_s = 0.0

    def _device(self, device_id: str, feed: tuple[Session, ...], fetcher: TimedFetcher, pool: TimedPool) -> SimDevice:
        spec = self.spec
        cache = spec.cache_root / device_id
        updater = PackageUpdater(
            spec.registry_url, spec.scene, device_id, cache, trusted_root=spec.trusted_root, fetcher=fetcher
        )
        reporter = TelemetryReporter(
            spec.registry_url,
            spec.token,
            scene=spec.scene,
            device_id=device_id,
            flush_interval_s=spec.flush_interval_s,
            http=pool,
        )
        runtime = Runtime(
            spec.registry_url,
            spec.scene,
            device_id,
            cache_dir=cache,
            telemetry=reporter,
            config=self.config,
            updater=updater,
            rng=self.rng,
        )
        return SimDevice(runtime, reporter, feed, self.decisions)

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        spec, clock, rng = self.spec, self.clock, self.rng
        heap: list[tuple[float, int, int]] = []
        start = clock.now()
        for i in range(len(self.devices)):
            switched_on = start + rng.uniform(0.0, spec.poll_interval_s)
            heap.append((switched_on, _POLL, i))
            heap.append((switched_on + SWIPE_S, _STEP, i))
            heap.append((switched_on + rng.uniform(0.0, spec.flush_interval_s), _FLUSH, i))
        heapq.heapify(heap)
        real_started = time.monotonic()
        next_status = next_command = 0.0
        lag_since_status = 0.0
        while True:
            real = time.monotonic()
            if real >= next_command:
                if not self._obey(heap):
                    break
                next_command = real + _COMMAND_INTERVAL_S
            if real >= next_status:
                loop_time = min(clock.now(), heap[0][0])
                self.conn.send(("status", spec.index, self._versions(), lag_since_status, loop_time))
                lag_since_status = 0.0
                next_status = real + spec.status_interval_s
            now = clock.now()
            due, kind, i = heap[0]
            if due > now:
                time.sleep(min(clock.real_seconds(due - now), _COMMAND_INTERVAL_S))
                continue
            heapq.heappop(heap)
            lag = clock.real_seconds(now - due)
            lag_since_status = max(lag_since_status, lag)
            self.max_lag_s = max(self.max_lag_s, lag)
            heapq.heappush(heap, (self._run(kind, self.devices[i], due), kind, i))
        return self._finish(time.monotonic() - real_started)

    def _obey(self, heap: list[tuple[float, int, int]]) -> bool:
        """Follow the parent's commands; False once told to stop (or orphaned).

        ``pause`` answers ("paused", index, simulated time of this loop) and waits for
        ``resume``: the parent changes the registry in between (a release), so every event of
        this worker is clearly before or after it. The loop's time is the clock's, or when the
        loop is behind, the due time of its next event.
        """
        try:
            while self.conn.poll():
                command = self.conn.recv()[0]
                if command == "stop":
                    return False
                if command == "pause":
                    self.conn.send(("paused", self.spec.index, min(self.clock.now(), heap[0][0])))
                    while (command := self.conn.recv()[0]) not in ("resume", "stop"):
                        pass
                    if command == "stop":
                        return False
        except (EOFError, OSError):  # the parent is gone: stop rather than run orphaned
            return False
        return True

    def _run(self, kind: int, device: SimDevice, due: float) -> float:
        """Run one due event; returns when the device's next event of that kind is due (simulated)."""
        spec = self.spec
        if kind == _POLL:
            event, took = device.poll(due)
            self.refreshes[event.outcome] += 1
            self.refresh_real_s.setdefault(event.outcome, []).append(took)
            return due + took + self.config.refresh_delay(device.failures, self.rng)
        if kind == _STEP:
            step = device.step(due)
            self.steps += 1
            pause = SWIPE_S
            if step.last_in_session and spec.idle_gap_s > 0:
                pause = self.rng.expovariate(1.0 / spec.idle_gap_s)
            return due + max(step.playing.watch_s, 0.0) + pause
        device.flush()
        self.flushes += 1
        return due + spec.flush_interval_s

    def _versions(self) -> dict[str | None, int]:
        return dict(Counter(device.version for device in self.devices))

    def _finish(self, real_s: float) -> dict[str, Any]:
        memory_peak = memory_kib()
        for device in self.devices:
            device.runtime.close()  # sends the reporter's last batch
        reporters = [device.reporter for device in self.devices]
        return {
            "index": self.spec.index,
            "devices": [(d.device_id, d.transitions) for d in self.devices],
            "decisions": list(self.decisions.items()),
            "steps": self.steps,
            "flushes": self.flushes,
            "refreshes": dict(self.refreshes),
            "refresh_real_s": self.refresh_real_s,
            "requests": {kind: list(values) for kind, values in self.requests.durations.items()},
            "requests_failed": dict(self.requests.failed),
            "telemetry": {
                "sent_batches": sum(r.sent_batches for r in reporters),
                "failed_batches": sum(r.failed_batches for r in reporters),
                "dropped_unreported": sum(r.dropped_events for r in reporters),
            },
            "memory_kib": {
                "before_devices": self.memory_before.get("VmRSS", 0),
                "peak": memory_peak.get("VmHWM", 0),
                "end": memory_peak.get("VmRSS", 0),
            },
            "max_lag_s": self.max_lag_s,
            "real_s": real_s,
        }
