"""The device-side runtime: the one object a host app talks to.

Workflow::

    with Runtime(registry_url, "watch_time", device_id, cache_dir=..., trusted_root=root_bytes,
                 telemetry=TelemetryConfig(token=client_token)) as rt:
        # start(): refresh now, then every refresh_interval_s (jitter; backoff on failure),
        # and send telemetry every minute (close() sends the last batch)
        decision = rt.predict(candidates)  # never raises; model, last-known-good or default policy
        rt.record(view)                    # each finished view feeds the feature state
        rt.observe(decision.prediction_id, actual_watch_s)

The package's code never runs on the host's threads (unless ``isolation="inline"``): each
installed version is a `ContainedPackage`, by default a sandboxed worker process, loaded on the
update thread under a load deadline and called under a per-call deadline
(`pitahaya.client_runtime.containment`). A call past its deadline returns the default policy
with reason ``timeout``; a load that hangs is abandoned and its version marked bad, so the kill
switch and newer releases always get through. Nothing the package raises, ``SystemExit``
included, leaves `refresh`, `predict`, `record` or `observe`.

Which package answers is a `DeviceState` (default / active / last-known-good / circuit)::

    default policy ──install──> active ──install newer──> active (old one becomes last-known-good)
          ^                        │
          └── kill switch / ───────┘── N failed calls of its last M (errors, timeouts, a lost
              circuit open             worker): active is marked bad, last-known-good (if any)
                                       becomes active, else the circuit opens: default policy
                                       for breaker_reset_s, then one trial call (half-open)

Fallback chain of one decision: the active package; if it raised, the last-known-good package
in the same call (within what is left of the deadline); else the built-in default policy.
Every decision carries a reason code (``ok`` or why it fell back), also sent to the hooks.

Monitoring is on by default: a runtime with a registry URL and a client token reports to the
registry (`pitahaya.client_runtime.telemetry`), next to the host's own ``hooks``
(`CompositeHooks`); the hooks only enqueue, so ``predict`` costs the same. ``telemetry=False``
opts out.

A package version that failed to load or kept failing is remembered as bad and never
retried. A release document older (lower ``release_id``) than one already obeyed on the
channel is refused, so only a *new* signed release can move a device back to an older
package. The active and last-known-good versions, the bad versions and the highest release
ids are persisted (``state.json``), so a device restarts offline on the package it last
verified (loaded by the first `refresh`, off the constructor's thread); expired registry
metadata stops new installs but never inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from pitahaya.client_runtime.files import write_atomic
from pitahaya.client_runtime.containment import ContainedPackage, Isolation, Limits, RequestTooLarge
from pitahaya.client_runtime.containment.limits import checked_isolation
from pitahaya.client_runtime.errors import (
    CallError,
    ClientRuntimeError,
    InferenceError,
    PackageError,
    PackageFormatError,
    SandboxUnavailableError,
)
from pitahaya.client_runtime.events import Candidate, View
from pitahaya.client_runtime.history import RecentViews
from pitahaya.client_runtime.hooks import (
    REASON_CIRCUIT_OPEN,
    REASON_INTERNAL_ERROR,
    REASON_INVALID_INPUT,
    REASON_KILL_SWITCH,
    REASON_NO_PACKAGE,
    REASON_OK,
    REASON_RELEASE_ROLLBACK,
    CompositeHooks,
    Hooks,
    InferenceEvent,
    UpdateEvent,
    call_hook,
    observes,
)
from pitahaya.client_runtime.package import read_package
from pitahaya.client_runtime.policy import PreloadPlan, PreloadPlanner, fixed_plan
from pitahaya.client_runtime.state import DeviceState, Mode
from pitahaya.client_runtime.telemetry import TelemetryConfig, TelemetryReporter
from pitahaya.client_runtime.updater import PackageUpdater, UpdateCheck

logger = logging.getLogger("pitahaya.client_runtime")

#: Recent predictions kept per video id, to size the buffer-ahead of the video playing.
_RECENT_PREDICTIONS = 64
#: Longest watch time a package may predict (a day); larger values are clamped, negative ones to 0.
MAX_WATCH_S = 86_400.0
#: What ``Runtime(telemetry=...)`` accepts; see `Runtime`.
Telemetry = TelemetryConfig | TelemetryReporter | bool | None
_warned_no_token = False


class Updater(Protocol):
    """The update seam: where a runtime learns which verified package to run.

    `PackageUpdater` (TUF over HTTP) is the default; `LocalArchiveUpdater` serves a package
    file a host already has, with no registry at all.
    """

    def check(self) -> UpdateCheck:
        """The release and, unless the device should use the default policy, the verified archive.

        Raises:
            ClientRuntimeError: no verified answer now (the runtime keeps what it runs).
        """
        ...

    def cached_archive(self, sha256: str) -> Path:
        """Where the archive with this sha256 is kept between restarts."""
        ...


def _reason_of(error: BaseException) -> str:
    """The reason code of a failed call: the package's (timeout, lost worker, error) or ours."""
    return error.reason if isinstance(error, CallError) else REASON_INTERNAL_ERROR


def _valid_candidates(candidates: Sequence[Candidate]) -> bool:
    """Whether every candidate has a positive finite duration and size (checked only after a failure)."""
    try:
        return all(
            0.0 < c.duration_s < math.inf and 0 < c.size_bytes < math.inf and isinstance(c.video_id, str)
            for c in candidates
        )
    except (AttributeError, TypeError):
        return False


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


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one `Runtime.predict` call.

    Attributes:
        prediction_id: Pass it to `Runtime.observe` with the real watch time.
        watch_s: Predicted seconds watched per candidate, or None under the default policy.
        plan: What to preload, and how far to buffer the playing video.
        package_version: Package that answered, or None for the default policy.
        reason: ``ok`` when the intended package answered, else the fallback's reason code.
        latency_s: Wall time of the decision.
    """

    prediction_id: int
    watch_s: tuple[float, ...] | None
    plan: PreloadPlan
    package_version: str | None
    reason: str
    latency_s: float

    @property
    def used_model(self) -> bool:
        return self.watch_s is not None


class _Slot:
    """An installed package (its contained code and knobs) and its recent calls' outcomes."""

    __slots__ = ("_window", "contained", "failures", "version")

    def __init__(self, contained: ContainedPackage, window: int) -> None:
        self.contained = contained
        self.version = contained.version
        self._window: deque[bool] = deque(maxlen=max(window, 1))
        #: Failed calls among the last ``window`` ones.
        self.failures = 0

    def outcome(self, failed: bool) -> None:
        """Count one call (the oldest one leaves the window)."""
        window = self._window
        if len(window) == window.maxlen:
            self.failures -= window[0]
        window.append(failed)
        self.failures += failed

    def forget_failures(self) -> None:
        self._window.clear()
        self.failures = 0

    @property
    def sha256(self) -> str:
        return self.contained.package.sha256


class Runtime:
    """Pulls verified packages, runs their code contained, predicts, and never crashes the host.

    Args:
        registry_url: Base URL of the registry (may be None when ``updater`` is given).
        scene: Scene name (e.g. ``watch_time``).
        device_id: Stable id of this device (rollout bucket, PV/UV).
        cache_dir: Writable folder for metadata, packages, state and the workers' folders.
        trusted_root: TUF root metadata shipped with the app (needed on first start).
        channel: Release channel to follow.
        hooks: The host's monitoring callbacks (default: none); fixed for the runtime's life.
        telemetry: Reporting to the registry, on by default. A `TelemetryConfig` (the default
            has no token): with a registry URL and ``token`` set, the runtime builds a
            `TelemetryReporter`; with no token it builds none and logs one warning (the
            registry refuses telemetry without a client token). A `TelemetryReporter`: used
            as is (your own URL, clock or pool). True: the default `TelemetryConfig`. ``False``
            or None: no reporting. The reporter
            runs beside ``hooks`` (both are called, each guarded), is started by `start` and
            closed (last batch sent) by `close`; a runtime never started never starts its
            thread, so the caller may drive ``runtime.telemetry.flush()`` itself.
        config: Runtime knobs, the isolation mode and limits among them.
        updater: Update seam (default: a `PackageUpdater` over HTTP); see `Updater`.
        clock: Monotonic clock in seconds (seam for tests: the circuit breaker).
        platform: This device's platform, for release targeting.
        app_version: The host app's version, for release targeting.
        wait: Seam of the update thread: ``wait(seconds)`` sleeps up to ``seconds`` and returns
            True when the runtime is closing (default: an event that `close` sets).
        rng: Source of the refresh jitter (seam for tests).
        isolation: Shorthand for ``config.isolation``.
    """

    def __init__(
        self,
        registry_url: str | None,
        scene: str,
        device_id: str,
        *,
        cache_dir: str | Path,
        trusted_root: bytes | None = None,
        channel: str = "stable",
        hooks: Hooks | None = None,
        telemetry: Telemetry = TelemetryConfig(),  # frozen: one shared default is safe
        config: RuntimeConfig | None = None,
        updater: Updater | None = None,
        clock: Callable[[], float] = time.monotonic,
        platform: str | None = None,
        app_version: str | None = None,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self.scene = scene
        self.device_id = device_id
        self.cache_dir = Path(cache_dir)
        self.config = config or RuntimeConfig()
        self.isolation = checked_isolation(isolation or self.config.isolation)
        self._telemetry = self._reporter(registry_url, telemetry)
        if self._telemetry is None:
            self._hooks = hooks or Hooks()
        elif hooks is None:
            self._hooks = self._telemetry
        else:
            self._hooks = CompositeHooks(hooks, self._telemetry)
        # Skip building events nobody listens to: the hot path pays only for what is observed.
        self._observed = {name: observes(self._hooks, name) for name in ("on_inference", "on_fallback", "on_view")}
        self._clock = clock
        if updater is None:
            if registry_url is None:
                raise ValueError("Runtime needs a registry_url or an updater")
            updater = PackageUpdater(
                registry_url,
                scene,
                device_id,
                self.cache_dir,
                trusted_root=trusted_root,
                channel=channel,
                platform=platform,
                app_version=app_version,
            )
        self._updater = updater
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._rng = rng or random.Random()
        self._thread: threading.Thread | None = None
        self._views = RecentViews(self.config.history_views)
        self._state: DeviceState[_Slot] = DeviceState(REASON_NO_PACKAGE)
        self._bad_versions: dict[str, str] = {}
        self._release_ids: dict[str, int] = {}
        self._to_restore: dict[str, dict[str, str]] = {}
        self._next_id = 0
        self._pending: dict[int, float] = {}
        self._recent_watch: dict[str, float] = {}
        self._planner = PreloadPlanner()
        self._closed = False
        shutil.rmtree(self._sandbox_root, ignore_errors=True)  # workers' folders of an earlier life
        self._read_state()

    def _reporter(self, registry_url: str | None, telemetry: Telemetry) -> TelemetryReporter | None:
        global _warned_no_token
        if isinstance(telemetry, TelemetryReporter):
            return telemetry
        if not telemetry or registry_url is None:
            return None
        if telemetry is True:
            telemetry = TelemetryConfig()
        if telemetry.token is None:
            if not _warned_no_token:
                _warned_no_token = True
                logger.warning(
                    "telemetry is on by default but has no client token, so nothing is reported: "
                    "pass telemetry=TelemetryConfig(token=...) (role client), or telemetry=False"
                )
            return None
        return TelemetryReporter.from_config(registry_url, telemetry, scene=self.scene, device_id=self.device_id)

    # ----------------------------------------------------------------- state
    @property
    def hooks(self) -> Hooks:
        """What the runtime calls: the host's hooks, the reporter, or both (`CompositeHooks`)."""
        return self._hooks

    @property
    def telemetry(self) -> TelemetryReporter | None:
        """The reporter sending this runtime's monitoring to the registry, or None when off."""
        return self._telemetry

    @property
    def active_version(self) -> str | None:
        """Version of the package answering now, or None under the default policy."""
        with self._lock:
            return self._state.active.version if self._state.active else None

    @property
    def last_known_good_version(self) -> str | None:
        with self._lock:
            return self._state.last_good.version if self._state.last_good else None

    @property
    def mode(self) -> Mode:
        """Whether the active package answers, the default policy, or the circuit breaker decides."""
        with self._lock:
            return self._state.mode

    @property
    def _state_path(self) -> Path:
        return self.cache_dir / "state.json"

    @property
    def _sandbox_root(self) -> Path:
        return self.cache_dir / "sandbox"

    def _persist(self) -> None:
        def entry(slot: _Slot | None) -> dict[str, str] | None:
            return None if slot is None else {"version": slot.version, "sha256": slot.sha256}

        state = {
            "active": entry(self._state.active),
            "last_known_good": entry(self._state.last_good),
            "bad": self._bad_versions,
            "release_ids": self._release_ids,
        }
        try:
            write_atomic(self._state_path, json.dumps(state, indent=2, sort_keys=True).encode())
        except OSError as e:
            call_hook(self._hooks, "on_error", "persist_state", e)

    def _read_state(self) -> None:
        """Read what the device knew (bad versions, release ids); its packages load on the first refresh."""
        try:
            state = json.loads(self._state_path.read_text())
            self._bad_versions = {str(k): str(v) for k, v in (state.get("bad") or {}).items()}
            self._release_ids = {str(k): int(v) for k, v in (state.get("release_ids") or {}).items()}
            self._to_restore = {
                key: {"sha256": str(state[key]["sha256"])} for key in ("active", "last_known_good") if state.get(key)
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
            call_hook(self._hooks, "on_error", "restore_state", e)

    def _restore(self) -> None:
        """Load the packages the device last verified (refresh thread); anything wrong means default policy."""
        to_restore, self._to_restore = self._to_restore, {}
        slots: dict[str, _Slot] = {}
        for key, entry in to_restore.items():
            try:
                slots[key] = self._load_slot(self._updater.cached_archive(entry["sha256"]), entry["sha256"])
            except (ClientRuntimeError, OSError) as e:
                call_hook(self._hooks, "on_error", f"restore_{key}", e)
        with self._lock:
            if self._state.active is None and self._state.last_good is None and self._state.mode is Mode.DEFAULT:
                self._state.restore(slots.get("active"), slots.get("last_known_good"))
            else:  # something newer was installed meanwhile
                for slot in slots.values():
                    slot.contained.close()

    def _load_slot(self, archive_path: Path, expected_sha256: str) -> _Slot:
        """Verify the cached archive's hash, then load it behind the isolation (raises PackageError)."""
        data = archive_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise PackageFormatError(f"cached package {archive_path.name} does not match its sha256")
        contained = ContainedPackage(
            read_package(data),
            isolation=self.isolation,
            limits=self.config.limits,
            sandbox_root=self._sandbox_root,
            views=self._views,
        )
        return _Slot(contained, self.config.breaker_window)

    def _retire(self, *slots: _Slot | None) -> None:
        """Stop the code of packages no longer active nor last-known-good (lock held)."""
        for slot in slots:
            if slot is not None and slot is not self._state.active and slot is not self._state.last_good:
                slot.contained.close()

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Runtime:
        """Check for updates now and then every ``refresh_interval_s`` on a daemon thread.

        Failed checks back off exponentially (``backoff_base_s`` doubling up to
        ``backoff_max_s``); every delay carries jitter. The telemetry reporter's thread starts
        too. Calling it twice is a no-op.
        """
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._update_loop, name="pitahaya-updates", daemon=True)
                self._thread.start()
        if self._telemetry is not None:
            self._telemetry.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the update thread (waits up to ``timeout_s`` for a check in flight) and every package's
        code, then close the telemetry reporter: it sends its last batch (at most its ``timeout_s``)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._lock:
            self._closed = True
            slots = (self._state.active, self._state.last_good)
        for slot in slots:
            if slot is not None:
                slot.contained.close()
        if self._telemetry is not None:
            self._telemetry.close(timeout_s)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _update_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            event = self.refresh()
            failures = failures + 1 if event.outcome == "failed" else 0
            if self._wait(self.config.refresh_delay(failures, self._rng)) or self._stop.is_set():
                return

    # ---------------------------------------------------------------- update
    def refresh(self) -> UpdateEvent:
        """Check the registry and install the package this device should run.

        Never raises: the outcome is returned and sent to ``on_update``. On any failure the
        current package (or the default policy) stays in place. One check runs at a time;
        loading a package runs here, under its load deadline, never on the predict path.
        """
        with self._refresh_lock:
            try:
                if self._to_restore:
                    self._restore()
                event = self._refresh()
            except Exception as e:  # a bug in us or a dependency must not reach the host app
                call_hook(self._hooks, "on_error", "refresh", e)
                event = UpdateEvent(self.scene, "failed", None, REASON_INTERNAL_ERROR, repr(e))
        call_hook(self._hooks, "on_update", event)
        return event

    def _refresh(self) -> UpdateEvent:
        try:
            check = self._updater.check()
        except ClientRuntimeError as e:
            with self._lock:
                if self._state.mode is Mode.DEFAULT and self._state.active is None:
                    self._state.reason = e.reason
            return UpdateEvent(self.scene, "failed", None, e.reason, str(e))
        release = check.release
        with self._lock:
            highest = self._release_ids.get(release.channel, -1)
            if release.release_id < highest:
                return UpdateEvent(
                    self.scene,
                    "rejected",
                    check.version,
                    REASON_RELEASE_ROLLBACK,
                    f"release {release.release_id} on {release.channel} is older than release {highest} already obeyed",
                )
            if release.release_id > highest:
                self._release_ids[release.channel] = release.release_id
                self._persist()
        if check.version is None:
            reason = REASON_KILL_SWITCH if release.kill_switch else REASON_NO_PACKAGE
            with self._lock:
                replaced = self._state.last_good
                self._state.to_default(reason)
                self._retire(replaced)
                self._planner.reset()
                self._persist()
            return UpdateEvent(self.scene, "default_policy", None, reason)
        with self._lock:
            state = self._state
            if state.active is not None and state.active.version == check.version:
                return UpdateEvent(self.scene, "unchanged", check.version, REASON_OK)
            if check.version in self._bad_versions:
                return UpdateEvent(self.scene, "rejected", check.version, self._bad_versions[check.version])
            reuse = state.last_good if state.last_good and state.last_good.version == check.version else None
        if check.archive_path is None or check.sha256 is None:
            raise RuntimeError("updater returned a version without a verified archive")
        try:
            slot = reuse or self._load_slot(check.archive_path, check.sha256)
        except PackageError as e:
            with self._lock:
                self._bad_versions[check.version] = e.reason
                if self._state.mode is Mode.DEFAULT and self._state.active is None:
                    self._state.reason = e.reason
                self._persist()
            return UpdateEvent(self.scene, "rejected", check.version, e.reason, str(e))
        except OSError as e:
            return UpdateEvent(self.scene, "failed", check.version, "cache_error", str(e))
        except SandboxUnavailableError as e:  # not the package's fault: try again at the next check
            return UpdateEvent(self.scene, "failed", check.version, e.reason, str(e))
        with self._lock:
            if self._closed:
                slot.contained.close()
                return UpdateEvent(self.scene, "failed", check.version, REASON_INTERNAL_ERROR, "runtime closed")
            replaced = self._state.last_good
            slot.forget_failures()
            self._state.install(slot)
            self._retire(replaced)
            self._planner.reset()
            self._persist()
        return UpdateEvent(self.scene, "installed", check.version, REASON_OK)

    # ------------------------------------------------------------- hot path
    def record(self, view: View) -> None:
        """Feed one finished view (in time order) to the feature state. Never raises.

        No package code runs here: the view is kept, and each package folds in the views it
        has not seen at its next call.
        """
        self._views.append(view)
        if self._observed["on_view"]:
            call_hook(self._hooks, "on_view", view)

    def predict(
        self,
        candidates: Sequence[Candidate],
        now: float | None = None,
        *,
        playing: Candidate | None = None,
        played_s: float = 0.0,
    ) -> Decision:
        """Decide what to preload for ``candidates``. Never raises, and returns by the package's deadline.

        Args:
            candidates: Upcoming videos in play order.
            now: Decision time in seconds since the epoch (default: the wall clock).
            playing: The video playing now; when it was a candidate of an earlier decision,
                ``plan.buffer_ahead_s`` caps its buffer at its predicted remaining watch time.
            played_s: Seconds of ``playing`` watched so far.
        """
        started = time.perf_counter()
        try:
            return self._predict(candidates, time.time() if now is None else now, playing, played_s, started)
        except Exception as e:  # a bug in us must never reach the host app
            call_hook(self._hooks, "on_error", "predict", e)
            plan = fixed_plan(candidates) if isinstance(candidates, Sequence) else PreloadPlan(())
            return Decision(0, None, plan, None, REASON_INTERNAL_ERROR, time.perf_counter() - started)

    def _predict(
        self, candidates: Sequence[Candidate], now: float, playing: Candidate | None, played_s: float, started: float
    ) -> Decision:
        error: BaseException | None = None
        watch: tuple[float, ...] | None = None
        with self._lock:
            self._next_id += 1
            prediction_id = self._next_id
            slot, reason = self._answering()
            active = slot.version if slot is not None else None
            if slot is not None:
                deadline = time.monotonic() + slot.contained.limits.call_timeout_s
                try:
                    watch = self._infer(slot, candidates, now, deadline)
                    if self._state.mode is Mode.HALF_OPEN:
                        self._state.close_circuit()
                    slot.outcome(False)
                except Exception as e:
                    error = e
                    reason = _reason_of(e)
                    if isinstance(e, RequestTooLarge) or not _valid_candidates(candidates):
                        # the caller's fault: not held against the package
                        slot, reason = None, REASON_INVALID_INPUT
                    else:
                        failed, slot = slot, self._state.last_good  # next in the chain, taken before any demotion
                        self._on_slot_failure(failed, e)
                        if time.monotonic() >= deadline:
                            slot = None  # no time left for another package: the default policy answers
                    if slot is not None:
                        try:
                            watch = self._infer(slot, candidates, now, deadline)
                        except Exception as e2:
                            self._on_slot_failure(slot, e2)
                            slot = None
            if watch is None:
                self._planner.reset()
                plan = fixed_plan(candidates)
                version = None
            else:
                assert slot is not None
                version = slot.version
                remaining = None
                if playing is not None:
                    predicted = self._recent_watch.get(playing.video_id)
                    remaining = None if predicted is None else predicted - played_s
                plan = self._planner.plan(
                    candidates, watch, slot.contained.knobs, playing=playing, playing_remaining_s=remaining
                )
                if watch:
                    self._remember(prediction_id, candidates[0].video_id, watch[0])
        latency = time.perf_counter() - started
        decision = Decision(prediction_id, watch, plan, version, reason, latency)
        if reason != REASON_OK and self._observed["on_fallback"]:
            call_hook(self._hooks, "on_fallback", reason, error)
        if self._observed["on_inference"]:
            event = InferenceEvent(
                prediction_id, self.scene, version, len(candidates), latency, reason == REASON_OK, reason, active
            )
            call_hook(self._hooks, "on_inference", event)
        return decision

    def _answering(self) -> tuple[_Slot | None, str]:
        """The package that should answer now and the reason code if none (lock held)."""
        state = self._state
        if state.mode is Mode.DEFAULT:
            return None, state.reason
        if state.mode is Mode.CIRCUIT_OPEN:
            if self._clock() < state.open_until:
                return None, REASON_CIRCUIT_OPEN
            state.half_open()  # this call is the trial
        return state.active, REASON_OK

    def _infer(self, slot: _Slot, candidates: Sequence[Candidate], now: float, deadline: float) -> tuple[float, ...]:
        """Predicted watch seconds from ``slot``, clamped to [0, MAX_WATCH_S] (lock held)."""
        if not candidates:
            return ()
        out = slot.contained.predict(candidates, now, deadline)
        if not math.isfinite(sum(out)):
            raise InferenceError(f"package {slot.version} predicted a non-finite watch time")
        if min(out) < 0.0 or max(out) > MAX_WATCH_S:
            return tuple(min(max(x, 0.0), MAX_WATCH_S) for x in out)
        return out

    def _remember(self, prediction_id: int, video_id: str, watch_s: float) -> None:
        """Keep the first candidate's prediction for `observe` and for its buffer-ahead (lock held)."""
        pending = self._pending
        pending[prediction_id] = watch_s
        if len(pending) > self.config.pending_outcomes:
            del pending[next(iter(pending))]
        recent = self._recent_watch
        recent[video_id] = watch_s
        if len(recent) > _RECENT_PREDICTIONS:
            del recent[next(iter(recent))]

    def observe(self, prediction_id: int, actual_watch_s: float) -> None:
        """Join the real watch time of the first candidate of an earlier decision. Never raises."""
        try:
            actual = float(actual_watch_s)
        except (TypeError, ValueError):
            return
        with self._lock:
            predicted = self._pending.pop(prediction_id, None)
        if predicted is not None and math.isfinite(actual):
            call_hook(self._hooks, "on_outcome", prediction_id, predicted, actual)

    def _on_slot_failure(self, slot: _Slot, error: BaseException) -> None:
        """Count a failed call of ``slot``; past the threshold take it out of service (lock held)."""
        call_hook(self._hooks, "on_error", "inference", error)
        reason = _reason_of(error)
        state = self._state
        slot.outcome(True)
        if slot is state.active and state.mode is Mode.HALF_OPEN:  # the trial failed: open again
            state.open_circuit(self._clock() + self.config.breaker_reset_s)
            return
        if slot.failures < self.config.breaker_failures:
            return
        if slot is state.active:
            if state.last_good is not None and state.last_good.failures < self.config.breaker_failures:
                self._bad_versions[slot.version] = reason
                self._retire(state.demote())
                self._planner.reset()
                self._persist()
                assert state.active is not None
                event = UpdateEvent(self.scene, "demoted", state.active.version, reason, repr(error))
                call_hook(self._hooks, "on_update", event)
            else:
                slot.forget_failures()
                state.open_circuit(self._clock() + self.config.breaker_reset_s)
        elif slot is state.last_good:
            self._retire(state.drop_last_good())
