"""Update checks: one at a time on demand, or on a daemon thread with jitter and backoff.

`Refresher.refresh` asks the `Updater` which verified package this device should run and
hands the answer to `InstalledPackages.apply`; the first check also reloads the packages a
restarted device verified before. `Refresher.start` repeats it every ``refresh_interval_s``
(failed checks back off exponentially; every delay carries jitter, so a fleet does not poll in
lockstep) until `Refresher.stop`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pitahaya.client_runtime.config import RuntimeConfig
from pitahaya.client_runtime.errors import ClientRuntimeError
from pitahaya.client_runtime.hooks import REASON_INTERNAL_ERROR, Hooks, UpdateEvent, call_hook
from pitahaya.client_runtime.installed import InstalledPackages
from pitahaya.client_runtime.updater import UpdateCheck


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


class Refresher:
    """Runs update checks against ``updater`` and applies them to ``packages``.

    Args:
        scene: Scene name (for the `UpdateEvent` of a check that failed here).
        updater: Where verified packages come from.
        packages: The device's packages.
        hooks: Told about every check (``on_update``) and any bug contained here (``on_error``).
        config: Refresh interval, jitter and backoff.
        wait: ``wait(seconds)`` sleeps up to ``seconds`` and returns True when the loop should
            end (default: an event that `stop` sets).
        rng: Source of the jitter.

    Attributes:
        config: ``config`` (`Runtime.config` replaces it when assigned).
        thread: The update thread while one runs.
    """

    def __init__(
        self,
        scene: str,
        updater: Updater,
        packages: InstalledPackages,
        *,
        hooks: Hooks,
        config: RuntimeConfig,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.scene = scene
        self._updater = updater
        self._packages = packages
        self._hooks = hooks
        self.config = config
        self._check_lock = threading.Lock()  # one check at a time
        self._thread_lock = threading.Lock()  # one update thread at a time
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._rng = rng or random.Random()
        self.thread: threading.Thread | None = None

    def refresh(self) -> UpdateEvent:
        """Check for an update and apply it. Never raises: the outcome goes to ``on_update`` and is returned."""
        with self._check_lock:
            try:
                self._packages.restore(self._updater.cached_archive)
                event = self._check()
            except Exception as e:  # a bug in us or a dependency must not reach the host app
                call_hook(self._hooks, "on_error", "refresh", e)
                event = UpdateEvent(self.scene, "failed", None, REASON_INTERNAL_ERROR, repr(e))
        call_hook(self._hooks, "on_update", event)
        return event

    def _check(self) -> UpdateEvent:
        try:
            check = self._updater.check()
        except ClientRuntimeError as e:
            self._packages.check_failed(e.reason)
            return UpdateEvent(self.scene, "failed", None, e.reason, str(e))
        return self._packages.apply(check)

    def start(self) -> None:
        """Check now, then every ``refresh_interval_s`` on a daemon thread; a no-op while one runs."""
        with self._thread_lock:
            if self.thread is None:
                self._stop.clear()
                self.thread = threading.Thread(target=self._loop, name="pitahaya-updates", daemon=True)
                self.thread.start()

    def stop(self, timeout_s: float) -> None:
        """End the update thread, waiting up to ``timeout_s`` for a check in flight."""
        self._stop.set()
        with self._thread_lock:
            thread, self.thread = self.thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            event = self.refresh()
            failures = failures + 1 if event.outcome == "failed" else 0
            if self._wait(self.config.refresh_delay(failures, self._rng)) or self._stop.is_set():
                return
