"""The built-in monitoring reporter: hooks in, per-minute aggregates out to the registry.

`TelemetryReporter` is a `Hooks` implementation. On the caller's thread a hook only appends a
small tuple to a bounded queue (a deque append; no lock, no I/O); when the queue is full the
event is dropped and counted, so `Runtime.predict` is never blocked by monitoring. A daemon
thread drains the queue every ``flush_interval_s``, folds events into one window per
(minute, package version), and POSTs them to ``/api/v1/telemetry`` (contract 2).

A `Runtime` built with a registry URL reports by default: give it a client token with
``telemetry=TelemetryConfig(token=...)``; it builds the reporter, starts its thread with
`Runtime.start` and flushes it in `Runtime.close`. A runtime that is never started never
starts the thread, so a caller (a fleet simulator on a compressed clock) drives `flush`
itself. A reporter can also be built and passed by hand::

    reporter = TelemetryReporter(registry_url, token, scene="watch_time", device_id=device_id)
    with Runtime(..., telemetry=reporter) as rt:   # started and closed with the runtime
        ...

Per window: inferences and successes (success rate), fallbacks by reason, errors by where,
a latency histogram (µs buckets, `LATENCY_US_BOUNDS`: log-spaced, about 20% wide, from 10 µs
to 1 s, fine enough for a p99), views (PV; the registry derives UV from device ids), and the
joined outcomes with the sum of their absolute errors (MAE) and of their squares (the
variance of the online error). Windows that could not be sent (network, 429, 5xx) are kept
and retried with the next batch, up to ``max_windows``; a rejected batch (401/403/422: it
would never be accepted) is dropped, logged and counted.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import urllib3

from pitahaya.client_runtime.events import View
from pitahaya.client_runtime.hooks import REASON_OK, Hooks, InferenceEvent, UpdateEvent

logger = logging.getLogger("pitahaya.client_runtime")

#: Upper bounds (inclusive) of the latency buckets in microseconds; one more bucket overflows.
#: ``round(10 * 10 ** (5 * k / 63))`` for k = 0..63: 10 µs to 1 s, each bucket 17-24% wider
#: than the one before, so a quantile interpolated within its bucket is off by at most ~10%.
#: The registry imports this list (and still accepts the 9-bound layout of older runtimes).
LATENCY_US_BOUNDS: tuple[int, ...] = (
    10, 12, 14, 17, 21, 25, 30, 36, 43, 52, 62, 75, 90, 108, 129, 155, 186, 223, 268, 322, 387, 464,
    557, 669, 803, 964, 1157, 1389, 1668, 2003, 2404, 2886, 3465, 4160, 4994, 5995, 7197, 8640, 10372,
    12452, 14949, 17946, 21544, 25864, 31050, 37276, 44750, 53723, 64495, 77426, 92951, 111588, 133963,
    160823, 193070, 231782, 278256, 334048, 401028, 481437, 577969, 693857, 832981, 1000000,
)  # fmt: skip
TELEMETRY_PATH = "/api/v1/telemetry"
#: Statuses that mean "this batch will never be accepted": drop it rather than retry forever.
_REJECTED = frozenset({400, 401, 403, 404, 413, 422})
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
#: Predictions whose version is remembered, to attribute outcomes that arrive later.
_VERSIONS_KEPT = 4096


def _label(text: str) -> str:
    """A registry-safe label (``[A-Za-z0-9_.:-]{1,64}``)."""
    return (_LABEL_UNSAFE.sub("_", text) or "unknown")[:64]


@dataclass(frozen=True)
class TelemetryConfig:
    """How a `Runtime` reports to its registry (on by default; ``telemetry=False`` opts out).

    Attributes:
        token: Bearer token of role ``client`` (``pitahaya tokens create NAME --role client``).
            The registry refuses telemetry without one, so without a token the runtime builds
            no reporter and logs one warning saying so.
        flush_interval_s: Time between batches once the runtime is started.
        max_queue: Events buffered between flushes; beyond it events are dropped and counted.
        max_windows: Unsent windows kept for retry (a day of minutes).
        timeout_s: Total time one POST may take (also bounds what `Runtime.close` waits for).
    """

    token: str | None = None
    flush_interval_s: float = 60.0
    max_queue: int = 10_000
    max_windows: int = 1440
    timeout_s: float = 10.0


@dataclass
class _Window:
    inferences: int = 0
    successes: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_us_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_US_BOUNDS) + 1))
    views: int = 0
    outcomes: int = 0
    abs_error_sum_s: float = 0.0
    abs_error_sq_sum_s2: float = 0.0

    def to_json(self, minute: int, version: str | None) -> dict[str, Any]:
        return {
            "minute": datetime.fromtimestamp(minute, tz=UTC).strftime("%Y-%m-%dT%H:%M:00Z"),
            "package_version": version,
            "inferences": self.inferences,
            "successes": self.successes,
            "fallbacks": dict(self.fallbacks),
            "errors": dict(self.errors),
            "latency_us_bounds": list(LATENCY_US_BOUNDS),
            "latency_us_counts": list(self.latency_us_counts),
            "views": self.views,
            "outcomes": self.outcomes,
            "abs_error_sum_s": self.abs_error_sum_s,
            "abs_error_sq_sum_s2": self.abs_error_sq_sum_s2,
        }


class TelemetryReporter(Hooks):
    """Batches monitoring to the registry on a background thread; never blocks the caller.

    Args:
        registry_url: Base URL of the registry.
        token: Bearer token with role ``client``.
        scene: Scene name reported with every batch.
        device_id: This device's id (the registry counts UV from it).
        flush_interval_s: Time between batches once started.
        max_queue: Events buffered between flushes; beyond it events are dropped and counted.
        max_windows: Unsent windows kept for retry; the oldest are dropped (and counted) past it.
        timeout_s: Total time one POST may take.
        wall_clock: Seconds since the epoch (seam for tests: which minute an event falls in).
        http: urllib3 pool (seam; default: a fresh `urllib3.PoolManager`).
    """

    def __init__(
        self,
        registry_url: str,
        token: str,
        *,
        scene: str,
        device_id: str,
        flush_interval_s: float = 60.0,
        max_queue: int = 10_000,
        max_windows: int = 1440,
        timeout_s: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.url = registry_url.rstrip("/") + TELEMETRY_PATH
        self.scene = scene
        self.device_id = device_id
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.max_windows = max_windows
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._timeout = urllib3.Timeout(total=timeout_s)
        self._clock = wall_clock
        self._http = http or urllib3.PoolManager()
        self._queue: deque[tuple[Any, ...]] = deque()
        self._drop_lock = threading.Lock()
        self._dropped = 0  # events dropped since the last accepted batch
        self._flush_lock = threading.Lock()
        self._windows: dict[tuple[int, str | None], _Window] = {}
        #: The batch being sent (body, its windows, its drop count) until the registry answers.
        self._in_flight: tuple[bytes, dict[tuple[int, str | None], _Window], int] | None = None
        self._versions: dict[int, str | None] = {}
        self._version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Batches the registry accepted, and those that failed (for the host's own health checks).
        self.sent_batches = 0
        self.failed_batches = 0

    @classmethod
    def from_config(
        cls, registry_url: str, config: TelemetryConfig, *, scene: str, device_id: str
    ) -> TelemetryReporter:
        """The reporter a `Runtime` builds from its `TelemetryConfig`.

        Raises:
            ValueError: ``config.token`` is None.
        """
        if config.token is None:
            raise ValueError("telemetry needs a client token")
        return cls(
            registry_url,
            config.token,
            scene=scene,
            device_id=device_id,
            flush_interval_s=config.flush_interval_s,
            max_queue=config.max_queue,
            max_windows=config.max_windows,
            timeout_s=config.timeout_s,
        )

    # ------------------------------------------------------------- hooks (caller's thread)
    def _put(self, event: tuple[Any, ...]) -> None:
        if len(self._queue) >= self.max_queue:
            with self._drop_lock:
                self._dropped += 1
            return
        self._queue.append(event)

    def on_inference(self, event: InferenceEvent) -> None:
        self._put(("inference", self._clock(), event))

    def on_error(self, where: str, error: BaseException) -> None:
        self._put(("error", self._clock(), where))

    def on_update(self, event: UpdateEvent) -> None:
        if event.outcome in ("installed", "demoted", "default_policy"):
            self._put(("version", self._clock(), event.version))

    def on_outcome(self, prediction_id: int, predicted_s: float, actual_s: float) -> None:
        self._put(("outcome", self._clock(), prediction_id, abs(predicted_s - actual_s)))

    def on_view(self, view: View) -> None:
        self._put(("view", self._clock()))

    @property
    def dropped_events(self) -> int:
        """Events dropped (full queue, rejected or overflowing windows) and not yet reported."""
        in_flight = self._in_flight
        return self._dropped + (in_flight[2] if in_flight is not None else 0)

    # ------------------------------------------------------------- background side
    def _window(self, at: float, version: str | None) -> _Window:
        key = (int(at // 60) * 60, version)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        return window

    def _drain(self) -> None:
        """Fold queued events into windows (flush lock held)."""
        queue = self._queue
        while queue:
            kind, at, *rest = queue.popleft()
            if kind == "inference":
                event: InferenceEvent = rest[0]
                # Counted against the version asked, not the one that covered for it (see InferenceEvent).
                version = event.active_version if event.active_version is not None else event.package_version
                self._version = version
                self._versions[event.prediction_id] = version
                if len(self._versions) > _VERSIONS_KEPT:
                    del self._versions[next(iter(self._versions))]
                window = self._window(at, version)
                window.inferences += 1
                if event.reason == REASON_OK:
                    window.successes += 1
                else:
                    reason = _label(event.reason)
                    window.fallbacks[reason] = window.fallbacks.get(reason, 0) + 1
                bucket = bisect.bisect_left(LATENCY_US_BOUNDS, event.latency_s * 1e6)
                window.latency_us_counts[bucket] += 1
            elif kind == "outcome":
                prediction_id, abs_error = rest
                window = self._window(at, self._versions.pop(prediction_id, self._version))
                window.outcomes += 1
                window.abs_error_sum_s += abs_error
                window.abs_error_sq_sum_s2 += abs_error * abs_error
            elif kind == "version":  # views and errors until the next decision belong to it
                self._version = rest[0]
            elif kind == "view":
                self._window(at, self._version).views += 1
            else:  # error
                window = self._window(at, self._version)
                where = _label(rest[0])
                window.errors[where] = window.errors.get(where, 0) + 1
        overflow = len(self._windows) - self.max_windows
        for key in list(self._windows)[: max(overflow, 0)]:
            lost = self._windows.pop(key)
            with self._drop_lock:
                self._dropped += lost.inferences + lost.views + lost.outcomes

    def flush(self) -> bool:
        """Drain the queue and send the pending batch now. Never raises.

        A batch carries a random ``batch_id`` and, once built, is sent byte for byte until the
        registry answers (a timeout after the registry stored it must not count it twice: the
        registry ignores a ``batch_id`` it has seen). Windows that fill up meanwhile wait for
        the next batch.

        Returns:
            True when nothing was pending or the registry accepted the batch.
        """
        with self._flush_lock:
            try:
                self._drain()
            except Exception:  # a bug here must not kill the thread or the host
                logger.exception("telemetry aggregation failed; batch kept")
            if self._in_flight is None:
                if not self._windows and not self._dropped:
                    return True
                self._in_flight = self._freeze()
            body, windows, dropped = self._in_flight
            try:
                response = self._http.request(
                    "POST", self.url, body=body, headers=self._headers, timeout=self._timeout, retries=False
                )
                status = response.status
            except Exception as e:  # network down, DNS, TLS...: the same batch goes again next time
                logger.info("telemetry not sent (%s); kept for retry", e)
                self.failed_batches += 1
                return False
            if status in (200, 202, 204):
                self._in_flight = None
                self.sent_batches += 1
                return True
            if status in _REJECTED:
                self._in_flight = None
                logger.warning("registry rejected telemetry (HTTP %s); batch dropped", status)
                with self._drop_lock:
                    self._dropped += dropped + sum(w.inferences + w.views + w.outcomes for w in windows.values())
            self.failed_batches += 1
            return False

    def _freeze(self) -> tuple[bytes, dict[tuple[int, str | None], _Window], int]:
        """Take every pending window (and the drop count) into one batch to send until answered."""
        windows, self._windows = self._windows, {}
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        body = {
            "device_id": self.device_id,
            "scene": self.scene,
            "batch_id": uuid.uuid4().hex,
            "sent_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "windows": [w.to_json(minute, version) for (minute, version), w in sorted(windows.items(), key=_order)],
            "dropped_events": dropped,
        }
        return json.dumps(body).encode(), windows, dropped

    # ------------------------------------------------------------- lifecycle
    def start(self) -> TelemetryReporter:
        """Send a batch every ``flush_interval_s`` on a daemon thread. A second call is a no-op."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pitahaya-telemetry", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and try one last batch."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def __enter__(self) -> TelemetryReporter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _order(item: tuple[tuple[int, str | None], _Window]) -> tuple[int, str]:
    (minute, version), _ = item
    return minute, version or ""
