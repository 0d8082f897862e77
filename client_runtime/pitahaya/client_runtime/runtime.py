"""The device-side runtime: the one object a host app talks to.

Workflow::

    rt = Runtime(registry_url, "watch_time", device_id, cache_dir=..., trusted_root=root_bytes)
    rt.refresh()                      # on start and then periodically: verified update
    decision = rt.predict(candidates) # never raises; model or default policy
    rt.record(view)                   # each finished view feeds the feature state
    rt.observe(decision.prediction_id, actual_watch_s)

State (one `Runtime` holds it; every transition happens under one lock)::

    default policy ──install──> active ──install newer──> active (old one becomes last-known-good)
          ^                        │
          └── kill switch / ───────┘── N consecutive inference failures: active is marked bad,
              circuit open             last-known-good (if any) becomes active, else default policy

A package version that failed to load or kept failing is remembered as bad and never
retried. The active and last-known-good versions are persisted (``state.json``), so a
device restarts offline on the package it last verified.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitahaya.client_runtime._fs import write_atomic
from pitahaya.client_runtime.errors import ClientRuntimeError, PackageError, PackageFormatError
from pitahaya.client_runtime.events import Candidate, View
from pitahaya.client_runtime.extractor import FeatureExtractor
from pitahaya.client_runtime.hooks import (
    REASON_CIRCUIT_OPEN,
    REASON_INFERENCE_ERROR,
    REASON_KILL_SWITCH,
    REASON_NO_PACKAGE,
    REASON_OK,
    Hooks,
    InferenceEvent,
    UpdateEvent,
    call_hook,
)
from pitahaya.client_runtime.loader import LoadedPackage
from pitahaya.client_runtime.package import read_package
from pitahaya.client_runtime.policy import DEFAULT_POLICY, PreloadPlan, fixed_plan, model_plan
from pitahaya.client_runtime.updater import PackageUpdater

logger = logging.getLogger("pitahaya.client_runtime")


@dataclass(frozen=True)
class RuntimeConfig:
    """Knobs of the runtime, with units in their names.

    Attributes:
        history_views: Recent views kept to rebuild feature state when a package is swapped in.
        breaker_failures: Consecutive inference failures that take a package out of service.
        breaker_reset_s: With no last-known-good, how long the default policy is used
            before the failing package is tried again (half-open).
        pending_outcomes: How many predictions wait for `Runtime.observe`.
    """

    history_views: int = 512
    breaker_failures: int = 5
    breaker_reset_s: float = 60.0
    pending_outcomes: int = 1024


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one `Runtime.predict` call.

    Attributes:
        prediction_id: Pass it to `Runtime.observe` with the real watch time.
        watch_s: Predicted seconds watched per candidate, or None under the default policy.
        plan: What to preload.
        package_version: Package that answered, or None for the default policy.
        reason: ``ok`` when the model answered, else the fallback's reason code.
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


@dataclass
class _Slot:
    """A loaded package with the feature state of this device's user."""

    loaded: LoadedPackage
    extractor: FeatureExtractor
    buffer: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    failures: int = 0

    @property
    def version(self) -> str:
        return self.loaded.version


class Runtime:
    """Pulls verified packages, computes features, predicts, and never crashes the host.

    Args:
        registry_url: Base URL of the registry.
        scene: Scene name (e.g. ``watch_time``).
        device_id: Stable id of this device (rollout bucket, PV/UV).
        cache_dir: Writable folder for metadata, packages and state.
        trusted_root: TUF root metadata shipped with the app (needed on first start).
        channel: Release channel to follow.
        hooks: Monitoring callbacks (default: no-ops).
        config: Runtime knobs.
        updater: Update seam (default: a `PackageUpdater` over HTTP).
        clock: Monotonic clock in seconds (seam for tests).
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
    ) -> None:
        self.scene = scene
        self.device_id = device_id
        self.cache_dir = Path(cache_dir)
        self.hooks = hooks or Hooks()
        self.config = config or RuntimeConfig()
        self._clock = clock
        self._updater = updater or PackageUpdater(
            registry_url, scene, device_id, self.cache_dir, trusted_root=trusted_root, channel=channel
        )
        self._lock = threading.RLock()
        self._history: deque[View] = deque(maxlen=self.config.history_views)
        self._active: _Slot | None = None
        self._last_good: _Slot | None = None
        self._bad_versions: dict[str, str] = {}
        self._fallback_reason = REASON_NO_PACKAGE
        self._circuit_open_until = 0.0
        self._ids = itertools.count(1)
        self._pending: OrderedDict[int, float] = OrderedDict()
        self._restore()

    # ----------------------------------------------------------------- state
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

        state = {"active": entry(self._active), "last_known_good": entry(self._last_good), "bad": self._bad_versions}
        try:
            write_atomic(self._state_path, json.dumps(state, indent=2, sort_keys=True).encode())
        except OSError as e:
            call_hook(self.hooks, "on_error", "persist_state", e)

    def _restore(self) -> None:
        """Load the packages the device last verified; anything wrong means default policy."""
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            call_hook(self.hooks, "on_error", "restore_state", e)
            return
        self._bad_versions = {str(k): str(v) for k, v in (state.get("bad") or {}).items()}
        slots: dict[str, _Slot] = {}
        for key in ("active", "last_known_good"):
            entry = state.get(key)
            if not entry:
                continue
            try:
                slots[key] = self._load_slot(self._updater.cached_archive(entry["sha256"]), expected_sha256=entry["sha256"])
            except (ClientRuntimeError, OSError, KeyError) as e:
                call_hook(self.hooks, "on_error", f"restore_{key}", e)
        self._active = slots.get("active") or slots.pop("last_known_good", None)
        self._last_good = slots.get("last_known_good")

    def _load_slot(self, archive_path: Path, *, expected_sha256: str) -> _Slot:
        data = archive_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise PackageFormatError(f"cached package {archive_path.name} does not match its sha256")
        loaded = LoadedPackage.load(read_package(data))
        return self._new_slot(loaded)

    def _new_slot(self, loaded: LoadedPackage) -> _Slot:
        extractor = loaded.new_extractor()
        for view in self._history:
            extractor.update(view)
        return _Slot(loaded=loaded, extractor=extractor)

    # ---------------------------------------------------------------- update
    def refresh(self) -> UpdateEvent:
        """Check the registry and install the package this device should run.

        Never raises: the outcome is returned and sent to ``on_update``. On any failure the
        current package (or the default policy) stays in place.
        """
        event = self._refresh()
        call_hook(self.hooks, "on_update", event)
        return event

    def _refresh(self) -> UpdateEvent:
        try:
            check = self._updater.check()
        except ClientRuntimeError as e:
            with self._lock:
                if self._active is None:
                    self._fallback_reason = e.reason
            return UpdateEvent(self.scene, "failed", None, e.reason, str(e))
        except Exception as e:  # a bug in us or a dependency must not reach the host app
            call_hook(self.hooks, "on_error", "refresh", e)
            return UpdateEvent(self.scene, "failed", None, "internal_error", repr(e))
        if check.version is None:
            reason = REASON_KILL_SWITCH if check.release.kill_switch else REASON_NO_PACKAGE
            with self._lock:
                if self._active is not None:
                    self._last_good = self._active
                self._active = None
                self._fallback_reason = reason
                self._persist()
            return UpdateEvent(self.scene, "default_policy", None, reason)
        with self._lock:
            if self._active is not None and self._active.version == check.version:
                return UpdateEvent(self.scene, "unchanged", check.version, REASON_OK)
            if check.version in self._bad_versions:
                return UpdateEvent(self.scene, "rejected", check.version, self._bad_versions[check.version])
        assert check.archive_path is not None and check.sha256 is not None
        try:
            slot = self._load_slot(check.archive_path, expected_sha256=check.sha256)
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
            # Replay views recorded while loading, then swap atomically.
            slot = self._new_slot(slot.loaded)
            if self._active is not None:
                self._last_good = self._active
            self._active = slot
            self._circuit_open_until = 0.0
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
                    self._on_slot_failure(slot, e)

    def predict(self, candidates: Sequence[Candidate], now: float | None = None) -> Decision:
        """Decide what to preload for ``candidates``. Never raises.

        Args:
            candidates: Upcoming videos in play order.
            now: Decision time in seconds since the epoch (default: the wall clock).
        """
        started = time.perf_counter()
        now = time.time() if now is None else now
        prediction_id = next(self._ids)
        with self._lock:
            slot = self._active
            reason = self._fallback_reason if slot is None else REASON_OK
            error: BaseException | None = None
            watch: tuple[float, ...] | None = None
            policy: dict[str, Any] = DEFAULT_POLICY
            if slot is not None and self._clock() < self._circuit_open_until:
                slot, reason = None, REASON_CIRCUIT_OPEN
            if slot is not None and not candidates:
                watch = ()
            elif slot is not None:
                try:
                    n = len(candidates)
                    if slot.buffer.shape[0] < n:
                        slot.buffer = np.empty((n, len(slot.loaded.manifest.feature_names)), dtype=np.float32)
                    features = slot.buffer[:n]
                    slot.extractor.transform(candidates, now, features)
                    watch = tuple(float(x) for x in slot.loaded.infer(features))
                    policy = slot.loaded.manifest.policy or DEFAULT_POLICY
                    slot.failures = 0
                except Exception as e:
                    error, reason, watch = e, REASON_INFERENCE_ERROR, None
                    self._on_slot_failure(slot, e)
            plan = model_plan(candidates, watch, policy) if watch is not None else fixed_plan(candidates)
            if watch and len(self._pending) < self.config.pending_outcomes:
                self._pending[prediction_id] = watch[0]
            version = slot.version if watch is not None and slot is not None else None
        decision = Decision(prediction_id, watch, plan, version, reason, time.perf_counter() - started)
        if watch is None:
            call_hook(self.hooks, "on_fallback", reason, error)
        call_hook(
            self.hooks,
            "on_inference",
            InferenceEvent(prediction_id, self.scene, version, len(candidates), decision.latency_s, watch is not None, reason),
        )
        return decision

    def observe(self, prediction_id: int, actual_watch_s: float) -> None:
        """Join the real watch time of the first candidate of an earlier decision. Never raises."""
        with self._lock:
            predicted = self._pending.pop(prediction_id, None)
        if predicted is not None:
            call_hook(self.hooks, "on_outcome", prediction_id, predicted, float(actual_watch_s))

    def _on_slot_failure(self, slot: _Slot, error: BaseException) -> None:
        """Count a failure of ``slot``; past the threshold take it out of service (lock held)."""
        call_hook(self.hooks, "on_error", f"package {slot.version}", error)
        slot.failures += 1
        if slot.failures < self.config.breaker_failures:
            return
        if slot is self._active:
            if self._last_good is not None and self._last_good.failures < self.config.breaker_failures:
                self._bad_versions[slot.version] = REASON_INFERENCE_ERROR
                self._active, self._last_good = self._last_good, None
                self._persist()
            else:
                slot.failures = 0
                self._circuit_open_until = self._clock() + self.config.breaker_reset_s
        elif slot is self._last_good:
            self._last_good = None
