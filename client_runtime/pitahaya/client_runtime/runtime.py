"""The device-side runtime: the one object a host app talks to.

Workflow::

    with Runtime(registry_url, "watch_time", device_id, cache_dir=..., trusted_root=root_bytes) as rt:
        # start(): refresh now, then every refresh_interval_s (jitter; backoff on failure)
        decision = rt.predict(candidates)  # never raises; model, last-known-good or default policy
        rt.record(view)                    # each finished view feeds the feature state
        rt.observe(decision.prediction_id, actual_watch_s)

State (one `Runtime` holds it; every transition happens under one lock)::

    default policy ──install──> active ──install newer──> active (old one becomes last-known-good)
          ^                        │
          └── kill switch / ───────┘── N consecutive inference failures: active is marked bad,
              circuit open             last-known-good (if any) becomes active, else the circuit
                                       opens: default policy for breaker_reset_s, then one trial
                                       call (half-open): success closes it, failure re-opens it

Fallback chain of one decision: the active package; if it raises, the last-known-good package
in the same call; else the built-in default policy. Every decision carries a reason code
(``ok`` or why it fell back), also sent to the hooks.

A package version that failed to load or kept failing is remembered as bad and never
retried. A release document older (lower ``release_id``) than one already obeyed on the
channel is refused, so only a *new* signed release can move a device back to an older
package. The active and last-known-good versions, the bad versions and the highest release
ids are persisted (``state.json``), so a device restarts offline on the package it last
verified; expired registry metadata stops new installs but never inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pitahaya.client_runtime._fs import write_atomic
from pitahaya.client_runtime.errors import ClientRuntimeError, FeatureCodeError, PackageError, PackageFormatError
from pitahaya.client_runtime.events import Candidate, View
from pitahaya.client_runtime.extractor import FeatureExtractor
from pitahaya.client_runtime.hooks import (
    REASON_CIRCUIT_OPEN,
    REASON_INFERENCE_ERROR,
    REASON_INTERNAL_ERROR,
    REASON_INVALID_INPUT,
    REASON_KILL_SWITCH,
    REASON_NO_PACKAGE,
    REASON_OK,
    REASON_RELEASE_ROLLBACK,
    Hooks,
    InferenceEvent,
    UpdateEvent,
    call_hook,
)
from pitahaya.client_runtime.loader import BoundInference, LoadedPackage
from pitahaya.client_runtime.package import read_package
from pitahaya.client_runtime.policy import PolicyKnobs, PreloadPlan, PreloadPlanner, fixed_plan
from pitahaya.client_runtime.updater import PackageUpdater

logger = logging.getLogger("pitahaya.client_runtime")

#: Batch sizes bound (and warmed up) when a package is loaded; larger ones are bound on first use.
_WARM_BATCHES = (1, 2, 3, 4, 8)
#: Largest batch that gets its own preallocated binding; beyond it `LoadedPackage.infer` allocates.
_MAX_BOUND_BATCH = 64
#: Recent predictions kept per video id, to size the buffer-ahead of the video playing.
_RECENT_PREDICTIONS = 64


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
        breaker_failures: Consecutive inference failures that take a package out of service.
        breaker_reset_s: With no last-known-good, how long the default policy is used
            before the failing package is tried again (half-open).
        pending_outcomes: How many predictions wait for `Runtime.observe` (oldest dropped first).
        refresh_interval_s: Time between update checks once started.
        refresh_jitter: Each delay is scaled by a random factor in ``[1 - j, 1 + j]``, so a
            fleet does not poll in lockstep.
        backoff_base_s: Delay after the first failed check; doubles with each further failure.
        backoff_max_s: Longest delay between checks after failures.
    """

    history_views: int = 512
    breaker_failures: int = 5
    breaker_reset_s: float = 60.0
    pending_outcomes: int = 1024
    refresh_interval_s: float = 600.0
    refresh_jitter: float = 0.1
    backoff_base_s: float = 15.0
    backoff_max_s: float = 3600.0

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
    """A loaded package with this device's feature state and preallocated inference buffers."""

    __slots__ = ("bindings", "extractor", "failures", "knobs", "loaded", "version")

    def __init__(self, loaded: LoadedPackage, extractor: FeatureExtractor) -> None:
        self.loaded = loaded
        self.version = loaded.version
        self.extractor = extractor
        try:
            self.knobs = PolicyKnobs.from_policy(loaded.manifest.policy)
        except (TypeError, ValueError) as e:
            raise PackageFormatError(f"manifest.json policy is invalid: {e}") from e
        # Warm-up: binding runs one inference per batch size, before the package is swapped in.
        self.bindings: dict[int, BoundInference] = {n: loaded.bind(n) for n in _WARM_BATCHES}
        self.failures = 0

    def binding(self, n: int) -> BoundInference | None:
        found = self.bindings.get(n)
        if found is None and n <= _MAX_BOUND_BATCH:
            found = self.bindings[n] = self.loaded.bind(n)
        return found


class Runtime:
    """Pulls verified packages, computes features, predicts, and never crashes the host.

    Args:
        registry_url: Base URL of the registry.
        scene: Scene name (e.g. ``watch_time``).
        device_id: Stable id of this device (rollout bucket, PV/UV).
        cache_dir: Writable folder for metadata, packages and state.
        trusted_root: TUF root metadata shipped with the app (needed on first start).
        channel: Release channel to follow.
        hooks: Monitoring callbacks (default: no-ops); fixed for the runtime's life.
        config: Runtime knobs.
        updater: Update seam (default: a `PackageUpdater` over HTTP).
        clock: Monotonic clock in seconds (seam for tests: the circuit breaker).
        platform: This device's platform, for release targeting.
        app_version: The host app's version, for release targeting.
        wait: Seam of the update thread: ``wait(seconds)`` sleeps up to ``seconds`` and returns
            True when the runtime is closing (default: an event that `close` sets).
        rng: Source of the refresh jitter (seam for tests).
    """

    def __init__(
        self,
        registry_url: str,
        scene: str,
        device_id: str,
        *,
        cache_dir: str | Path,
        trusted_root: bytes | None = None,
        channel: str = "stable",
        hooks: Hooks | None = None,
        config: RuntimeConfig | None = None,
        updater: PackageUpdater | None = None,
        clock: Callable[[], float] = time.monotonic,
        platform: str | None = None,
        app_version: str | None = None,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.scene = scene
        self.device_id = device_id
        self.cache_dir = Path(cache_dir)
        self.config = config or RuntimeConfig()
        self._hooks = hooks or Hooks()
        # Skip building events nobody listens to: the hot path pays only for what is observed.
        self._observed = {
            name: getattr(type(self._hooks), name) is not getattr(Hooks, name)
            for name in ("on_inference", "on_fallback", "on_view")
        }
        self._clock = clock
        self._updater = updater or PackageUpdater(
            registry_url,
            scene,
            device_id,
            self.cache_dir,
            trusted_root=trusted_root,
            channel=channel,
            platform=platform,
            app_version=app_version,
        )
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._rng = rng or random.Random()
        self._thread: threading.Thread | None = None
        self._history: deque[View] = deque(maxlen=self.config.history_views)
        self._active: _Slot | None = None
        self._last_good: _Slot | None = None
        self._bad_versions: dict[str, str] = {}
        self._release_ids: dict[str, int] = {}
        self._fallback_reason = REASON_NO_PACKAGE
        self._circuit_open_until = 0.0
        self._half_open = False
        self._next_id = 0
        self._pending: dict[int, float] = {}
        self._recent_watch: dict[str, float] = {}
        self._planner = PreloadPlanner()
        self._restore()

    # ----------------------------------------------------------------- state
    @property
    def hooks(self) -> Hooks:
        return self._hooks

    @property
    def active_version(self) -> str | None:
        """Version of the package answering now, or None under the default policy."""
        with self._lock:
            return self._active.version if self._active else None

    @property
    def last_known_good_version(self) -> str | None:
        with self._lock:
            return self._last_good.version if self._last_good else None

    @property
    def _state_path(self) -> Path:
        return self.cache_dir / "state.json"

    def _persist(self) -> None:
        def entry(slot: _Slot | None) -> dict[str, str] | None:
            if slot is None:
                return None
            return {"version": slot.version, "sha256": slot.loaded.package.sha256}

        state = {
            "active": entry(self._active),
            "last_known_good": entry(self._last_good),
            "bad": self._bad_versions,
            "release_ids": self._release_ids,
        }
        try:
            write_atomic(self._state_path, json.dumps(state, indent=2, sort_keys=True).encode())
        except OSError as e:
            call_hook(self._hooks, "on_error", "persist_state", e)

    def _restore(self) -> None:
        """Load the packages the device last verified; anything wrong means default policy."""
        try:
            state = json.loads(self._state_path.read_text())
            self._bad_versions = {str(k): str(v) for k, v in (state.get("bad") or {}).items()}
            self._release_ids = {str(k): int(v) for k, v in (state.get("release_ids") or {}).items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            call_hook(self._hooks, "on_error", "restore_state", e)
            return
        slots: dict[str, _Slot] = {}
        for key in ("active", "last_known_good"):
            entry = state.get(key)
            if not entry:
                continue
            try:
                slots[key] = self._load_slot(
                    self._updater.cached_archive(entry["sha256"]), expected_sha256=entry["sha256"]
                )
            except (ClientRuntimeError, OSError, KeyError, TypeError) as e:
                call_hook(self._hooks, "on_error", f"restore_{key}", e)
        self._active = slots.get("active") or slots.pop("last_known_good", None)
        self._last_good = slots.get("last_known_good")

    def _load_slot(self, archive_path: Path, *, expected_sha256: str) -> _Slot:
        data = archive_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise PackageFormatError(f"cached package {archive_path.name} does not match its sha256")
        loaded = LoadedPackage.load(read_package(data))
        return _Slot(loaded, self._replayed_extractor(loaded))

    def _replayed_extractor(self, loaded: LoadedPackage) -> FeatureExtractor:
        """A fresh extractor fed the recent views (raises FeatureCodeError if the code raises)."""
        extractor = loaded.new_extractor()
        with self._lock:  # a consistent copy: record() may append from another thread
            history = tuple(self._history)
        try:
            for view in history:
                extractor.update(view)
        except Exception as e:
            raise FeatureCodeError(f"features.py raised on recorded views: {type(e).__name__}: {e}") from e
        return extractor

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Runtime:
        """Check for updates now and then every ``refresh_interval_s`` on a daemon thread.

        Failed checks back off exponentially (``backoff_base_s`` doubling up to
        ``backoff_max_s``); every delay carries jitter. Calling it twice is a no-op.
        """
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._update_loop, name="pitahaya-updates", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the update thread (waits up to ``timeout_s`` for a check in flight)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

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
        current package (or the default policy) stays in place. One check runs at a time.
        """
        with self._refresh_lock:
            try:
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
                if self._active is None:
                    self._fallback_reason = e.reason
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
                if self._active is not None:
                    self._last_good = self._active
                self._active = None
                self._fallback_reason = reason
                self._planner.reset()
                self._persist()
            return UpdateEvent(self.scene, "default_policy", None, reason)
        with self._lock:
            if self._active is not None and self._active.version == check.version:
                return UpdateEvent(self.scene, "unchanged", check.version, REASON_OK)
            if check.version in self._bad_versions:
                return UpdateEvent(self.scene, "rejected", check.version, self._bad_versions[check.version])
            reuse = self._last_good if self._last_good and self._last_good.version == check.version else None
        if check.archive_path is None or check.sha256 is None:
            raise RuntimeError("updater returned a version without a verified archive")
        try:
            slot = reuse or self._load_slot(check.archive_path, expected_sha256=check.sha256)
        except PackageError as e:
            with self._lock:
                self._bad_versions[check.version] = e.reason
                if self._active is None:
                    self._fallback_reason = e.reason
                self._persist()
            return UpdateEvent(self.scene, "rejected", check.version, e.reason, str(e))
        except OSError as e:
            return UpdateEvent(self.scene, "failed", check.version, "cache_error", str(e))
        with self._lock:
            # Views recorded while the package loaded: replay them all, then swap atomically.
            try:
                slot.extractor = self._replayed_extractor(slot.loaded)
            except PackageError as e:
                self._bad_versions[check.version] = e.reason
                self._persist()
                return UpdateEvent(self.scene, "rejected", check.version, e.reason, str(e))
            slot.failures = 0
            if self._active is not None:
                self._last_good = self._active
            elif self._last_good is slot:
                self._last_good = None
            self._active = slot
            self._circuit_open_until, self._half_open = 0.0, False
            self._planner.reset()
            self._persist()
        return UpdateEvent(self.scene, "installed", check.version, REASON_OK)

    # ------------------------------------------------------------- hot path
    def record(self, view: View) -> None:
        """Feed one finished view (in time order) to the feature state. Never raises."""
        with self._lock:
            self._history.append(view)
            for slot in (self._active, self._last_good):
                if slot is None:
                    continue
                try:
                    slot.extractor.update(view)
                except Exception as e:
                    self._on_slot_failure(slot, e, "record")
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
        """Decide what to preload for ``candidates``. Never raises.

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
            slot = self._active
            reason = REASON_OK
            if slot is None:
                reason = self._fallback_reason
            elif self._circuit_open_until:
                if self._clock() < self._circuit_open_until:
                    slot, reason = None, REASON_CIRCUIT_OPEN
                else:  # half-open: this call is the trial
                    self._circuit_open_until, self._half_open = 0.0, True
            if slot is not None:
                try:
                    watch = self._infer(slot, candidates, now)
                    if self._half_open:
                        self._half_open = False
                    slot.failures = 0
                except Exception as e:
                    error, reason = e, REASON_INFERENCE_ERROR
                    if not _valid_candidates(candidates):  # the caller's fault: not held against the package
                        slot, reason = None, REASON_INVALID_INPUT
                    else:
                        failed, slot = slot, self._last_good  # next in the chain, taken before any demotion
                        self._on_slot_failure(failed, e, "inference")
                    if slot is not None:
                        try:
                            watch = self._infer(slot, candidates, now)
                        except Exception as e2:
                            self._on_slot_failure(slot, e2, "inference")
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
                plan = self._planner.plan(candidates, watch, slot.knobs, playing=playing, playing_remaining_s=remaining)
                if watch:
                    self._remember(prediction_id, candidates[0].video_id, watch[0])
        latency = time.perf_counter() - started
        decision = Decision(prediction_id, watch, plan, version, reason, latency)
        if reason != REASON_OK and self._observed["on_fallback"]:
            call_hook(self._hooks, "on_fallback", reason, error)
        if self._observed["on_inference"]:
            event = InferenceEvent(
                prediction_id, self.scene, version, len(candidates), latency, reason == REASON_OK, reason
            )
            call_hook(self._hooks, "on_inference", event)
        return decision

    def _infer(self, slot: _Slot, candidates: Sequence[Candidate], now: float) -> tuple[float, ...]:
        """Features + model for ``candidates`` on ``slot``'s preallocated buffers (lock held)."""
        n = len(candidates)
        if n == 0:
            return ()
        binding = slot.binding(n)
        if binding is None:
            features = slot.extractor.features(candidates, now)
            out = slot.loaded.infer(features).tolist()
        else:
            slot.extractor.transform(candidates, now, binding.features)
            out = binding.run().tolist()
        if not math.isfinite(sum(out)):
            raise ValueError(f"package {slot.version} predicted a non-finite watch time")
        return tuple(out)

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
        with self._lock:
            predicted = self._pending.pop(prediction_id, None)
        if predicted is not None:
            call_hook(self._hooks, "on_outcome", prediction_id, predicted, float(actual_watch_s))

    def _on_slot_failure(self, slot: _Slot, error: BaseException, where: str) -> None:
        """Count a failure of ``slot``; past the threshold take it out of service (lock held)."""
        call_hook(self._hooks, "on_error", where, error)
        slot.failures += 1
        if slot is self._active and self._half_open:  # the trial failed: open again
            self._half_open = False
            self._circuit_open_until = self._clock() + self.config.breaker_reset_s
            return
        if slot.failures < self.config.breaker_failures:
            return
        if slot is self._active:
            if self._last_good is not None and self._last_good.failures < self.config.breaker_failures:
                self._bad_versions[slot.version] = REASON_INFERENCE_ERROR
                self._active, self._last_good = self._last_good, None
                self._planner.reset()
                self._persist()
                event = UpdateEvent(self.scene, "demoted", self._active.version, REASON_INFERENCE_ERROR, repr(error))
                call_hook(self._hooks, "on_update", event)
            else:
                slot.failures = 0
                self._circuit_open_until = self._clock() + self.config.breaker_reset_s
        elif slot is self._last_good:
            self._last_good = None
