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

The runtime is a facade over one collaborator per job, sharing one lock:
`pitahaya.client_runtime.decisions` (the decision path, fallback chain and circuit breaker),
`pitahaya.client_runtime.installed` (activation, last-known-good, ``state.json``),
`pitahaya.client_runtime.refresher` (update checks and the update thread) and
`pitahaya.client_runtime.monitoring` (the host's hooks beside the telemetry reporter).
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from pitahaya.client_runtime.config import RuntimeConfig
from pitahaya.client_runtime.containment import Isolation
from pitahaya.client_runtime.containment.limits import checked_isolation
from pitahaya.client_runtime.decisions import Decider, Decision
from pitahaya.client_runtime.events import Candidate, View
from pitahaya.client_runtime.history import RecentViews
from pitahaya.client_runtime.hooks import REASON_INTERNAL_ERROR, Hooks, UpdateEvent, call_hook, observes
from pitahaya.client_runtime.installed import InstalledPackages
from pitahaya.client_runtime.monitoring import Telemetry, runtime_hooks, telemetry_reporter
from pitahaya.client_runtime.policy import PreloadPlan, PreloadPlanner, fixed_plan
from pitahaya.client_runtime.refresher import Refresher, Updater
from pitahaya.client_runtime.state import Mode
from pitahaya.client_runtime.telemetry import TelemetryConfig, TelemetryReporter
from pitahaya.client_runtime.updater import PackageUpdater


class Runtime:
    """Pulls verified packages, runs their code contained, predicts, and never crashes the host.

    Args:
        registry_url: Base URL of the registry (may be None when ``updater`` is given).
        scene: Scene name (e.g. ``watch_time``).
        device_id: Stable id of this device (rollout bucket, PV/UV).
        cache_dir: Writable folder for metadata, packages, state and the workers' folders.
        trusted_root: The registry's TUF root metadata shipped with the app, needed on first
            start: its bytes or the path of the file (see the README's "trusted root").
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
        trusted_root: bytes | str | os.PathLike[str] | None = None,
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
        self._config = config or RuntimeConfig()
        self.isolation = checked_isolation(isolation or self._config.isolation)
        self._telemetry = telemetry_reporter(registry_url, telemetry, scene=scene, device_id=device_id)
        self._hooks = runtime_hooks(hooks, self._telemetry)
        self._observe_views = observes(self._hooks, "on_view")
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
        # One lock for the device's state: a decision holds it from the choice of package to
        # the plan, an update check only while it swaps packages (never while loading one).
        self._lock = threading.RLock()
        self._views = RecentViews(self._config.history_views)
        planner = PreloadPlanner()
        self._packages = InstalledPackages(
            scene,
            self.cache_dir,
            config=self._config,
            isolation=self.isolation,
            views=self._views,
            hooks=self._hooks,
            lock=self._lock,
            on_swap=planner.reset,
        )
        self._decider = Decider(
            scene, self._packages, planner, hooks=self._hooks, config=self._config, clock=clock, lock=self._lock
        )
        self._refresher = Refresher(
            scene, updater, self._packages, hooks=self._hooks, config=self._config, wait=wait, rng=rng
        )

    # ----------------------------------------------------------------- state
    @property
    def config(self) -> RuntimeConfig:
        """The runtime's knobs. New ones apply from the next update check and decision; the
        isolation mode and the number of views kept stay those the runtime was built with."""
        return self._config

    @config.setter
    def config(self, config: RuntimeConfig) -> None:
        self._config = self._packages.config = self._decider.config = self._refresher.config = config

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
            active = self._packages.state.active
            return active.version if active else None

    @property
    def last_known_good_version(self) -> str | None:
        with self._lock:
            last_good = self._packages.state.last_good
            return last_good.version if last_good else None

    @property
    def mode(self) -> Mode:
        """Whether the active package answers, the default policy, or the circuit breaker decides."""
        with self._lock:
            return self._packages.state.mode

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Runtime:
        """Check for updates now and then every ``refresh_interval_s`` on a daemon thread.

        Failed checks back off exponentially (``backoff_base_s`` doubling up to
        ``backoff_max_s``); every delay carries jitter. The telemetry reporter's thread starts
        too. Calling it twice is a no-op.
        """
        self._refresher.start()
        if self._telemetry is not None:
            self._telemetry.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the update thread (waits up to ``timeout_s`` for a check in flight) and every package's
        code, then close the telemetry reporter: it sends its last batch (at most its ``timeout_s``)."""
        self._refresher.stop(timeout_s)
        self._packages.close()
        if self._telemetry is not None:
            self._telemetry.close(timeout_s)

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- update
    def refresh(self) -> UpdateEvent:
        """Check the registry and install the package this device should run.

        Never raises: the outcome is returned and sent to ``on_update``. On any failure the
        current package (or the default policy) stays in place. One check runs at a time;
        loading a package runs here, under its load deadline, never on the predict path.
        """
        return self._refresher.refresh()

    # ------------------------------------------------------------- hot path
    def record(self, view: View) -> None:
        """Feed one finished view (in time order) to the feature state. Never raises.

        No package code runs here: the view is kept, and each package folds in the views it
        has not seen at its next call.
        """
        self._views.append(view)
        if self._observe_views:
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
            return self._decider.decide(candidates, time.time() if now is None else now, playing, played_s, started)
        except Exception as e:  # a bug in us must never reach the host app
            call_hook(self._hooks, "on_error", "predict", e)
            plan = fixed_plan(candidates) if isinstance(candidates, Sequence) else PreloadPlan(())
            return Decision(0, None, plan, None, REASON_INTERNAL_ERROR, time.perf_counter() - started)

    def observe(self, prediction_id: int, actual_watch_s: float) -> None:
        """Join the real watch time of the first candidate of an earlier decision. Never raises."""
        try:
            actual = float(actual_watch_s)
        except (TypeError, ValueError):
            return
        predicted = self._decider.take_prediction(prediction_id)
        if predicted is not None and math.isfinite(actual):
            call_hook(self._hooks, "on_outcome", prediction_id, predicted, actual)
