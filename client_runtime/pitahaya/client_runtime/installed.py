"""The packages installed on a device: activation, last-known-good, and what survives a restart.

`InstalledPackages` holds the `DeviceState` (active / last-known-good / circuit), the versions
found bad (never retried), and the highest release id obeyed per channel (a release document
older than that is refused, so only a *new* signed release moves a device back). It applies
the answer of an update check (`InstalledPackages.apply`): verify the cached archive's hash,
load it behind the runtime's isolation under its load deadline, install it, retire what is
neither active nor last-known-good any more.

All of it is persisted in ``state.json`` after each change, so a device restarts offline on
the packages it last verified: the constructor reads the file, and `InstalledPackages.restore`
(called by the first update check, off the host's thread) loads them again.

Every method that changes the state takes the runtime's lock (a `threading.RLock` shared with
the decision path) or, where its docstring says so, expects the caller to hold it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from pitahaya.client_runtime.config import RuntimeConfig
from pitahaya.client_runtime.containment import ContainedPackage, Isolation
from pitahaya.client_runtime.errors import ClientRuntimeError, PackageError, PackageFormatError, SandboxUnavailableError
from pitahaya.client_runtime.files import write_atomic
from pitahaya.client_runtime.history import RecentViews
from pitahaya.client_runtime.hooks import (
    REASON_INTERNAL_ERROR,
    REASON_KILL_SWITCH,
    REASON_NO_PACKAGE,
    REASON_OK,
    REASON_RELEASE_ROLLBACK,
    Hooks,
    UpdateEvent,
    call_hook,
)
from pitahaya.client_runtime.package import read_package
from pitahaya.client_runtime.state import DeviceState, Mode
from pitahaya.client_runtime.updater import UpdateCheck


class Slot:
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


class InstalledPackages:
    """Which verified packages a device holds, which it refuses, and their record on disk.

    Args:
        scene: Scene name (for the `UpdateEvent` of each applied check).
        cache_dir: The runtime's folder: ``state.json`` and the workers' ``sandbox/`` live here.
        config: The runtime's knobs (limits and breaker window of each loaded package).
        isolation: Where package code runs (already checked).
        views: The device's recent views, replayed into each package at load.
        hooks: Told about errors writing or reading ``state.json`` and restoring packages.
        lock: The runtime's lock.
        on_swap: Called (lock held) whenever another package, or the default policy, starts
            answering: plans smoothed over the previous package's decisions no longer apply.

    Attributes:
        config: ``config`` (`Runtime.config` replaces it when assigned).
        state: The state machine; read and changed only under ``lock``.
        bad_versions: Version -> reason code of each package that failed to load or kept failing.
        release_ids: Channel -> highest release id obeyed.
        closed: Set by `close`; a package loaded afterwards is closed instead of installed.
    """

    def __init__(
        self,
        scene: str,
        cache_dir: Path,
        *,
        config: RuntimeConfig,
        isolation: Isolation,
        views: RecentViews,
        hooks: Hooks,
        lock: threading.RLock,
        on_swap: Callable[[], None],
    ) -> None:
        self.scene = scene
        self._state_path = cache_dir / "state.json"
        self._sandbox_root = cache_dir / "sandbox"
        self.config = config
        self._isolation = isolation
        self._views = views
        self._hooks = hooks
        self._lock = lock
        self._on_swap = on_swap
        self.state: DeviceState[Slot] = DeviceState(REASON_NO_PACKAGE)
        self.bad_versions: dict[str, str] = {}
        self.release_ids: dict[str, int] = {}
        self._to_restore: dict[str, dict[str, str]] = {}
        self.closed = False
        shutil.rmtree(self._sandbox_root, ignore_errors=True)  # workers' folders of an earlier life
        self._read_state()

    # --------------------------------------------------------------- on disk
    def persist(self) -> None:
        """Write ``state.json`` (lock held); a failed write is reported, never raised."""

        def entry(slot: Slot | None) -> dict[str, str] | None:
            return None if slot is None else {"version": slot.version, "sha256": slot.sha256}

        state = {
            "active": entry(self.state.active),
            "last_known_good": entry(self.state.last_good),
            "bad": self.bad_versions,
            "release_ids": self.release_ids,
        }
        try:
            write_atomic(self._state_path, json.dumps(state, indent=2, sort_keys=True).encode())
        except OSError as e:
            call_hook(self._hooks, "on_error", "persist_state", e)

    def _read_state(self) -> None:
        """Read what the device knew (bad versions, release ids); its packages load in `restore`."""
        try:
            state = json.loads(self._state_path.read_text())
            self.bad_versions = {str(k): str(v) for k, v in (state.get("bad") or {}).items()}
            self.release_ids = {str(k): int(v) for k, v in (state.get("release_ids") or {}).items()}
            self._to_restore = {
                key: {"sha256": str(state[key]["sha256"])} for key in ("active", "last_known_good") if state.get(key)
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
            call_hook(self._hooks, "on_error", "restore_state", e)

    def restore(self, cached_archive: Callable[[str], Path]) -> None:
        """Load the packages the device last verified, once; anything wrong means the default policy.

        Args:
            cached_archive: Where the archive with a given sha256 is kept (`Updater.cached_archive`).
        """
        if not self._to_restore:
            return
        to_restore, self._to_restore = self._to_restore, {}
        slots: dict[str, Slot] = {}
        for key, entry in to_restore.items():
            try:
                slots[key] = self.load(cached_archive(entry["sha256"]), entry["sha256"])
            except (ClientRuntimeError, OSError) as e:
                call_hook(self._hooks, "on_error", f"restore_{key}", e)
        with self._lock:
            if self.state.active is None and self.state.last_good is None and self.state.mode is Mode.DEFAULT:
                self.state.restore(slots.get("active"), slots.get("last_known_good"))
            else:  # something newer was installed meanwhile
                for slot in slots.values():
                    slot.contained.close()

    # ------------------------------------------------------------ activation
    def load(self, archive_path: Path, expected_sha256: str) -> Slot:
        """Verify the cached archive's hash, then load it behind the isolation (raises PackageError)."""
        data = archive_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise PackageFormatError(f"cached package {archive_path.name} does not match its sha256")
        contained = ContainedPackage(
            read_package(data),
            isolation=self._isolation,
            limits=self.config.limits,
            sandbox_root=self._sandbox_root,
            views=self._views,
        )
        return Slot(contained, self.config.breaker_window)

    def check_failed(self, reason: str) -> None:
        """No verified answer from the registry: with nothing installed, ``reason`` is why the default policy answers."""
        with self._lock:
            if self.state.mode is Mode.DEFAULT and self.state.active is None:
                self.state.reason = reason

    def apply(self, check: UpdateCheck) -> UpdateEvent:
        """Obey a verified update check: install its package, or send the device to the default policy.

        Loading runs here, on the caller's (update) thread, under the package's load deadline.

        Raises:
            RuntimeError: the check names a version without a verified archive (a bug of the updater).
        """
        release = check.release
        with self._lock:
            highest = self.release_ids.get(release.channel, -1)
            if release.release_id < highest:
                return UpdateEvent(
                    self.scene,
                    "rejected",
                    check.version,
                    REASON_RELEASE_ROLLBACK,
                    f"release {release.release_id} on {release.channel} is older than release {highest} already obeyed",
                )
            if release.release_id > highest:
                self.release_ids[release.channel] = release.release_id
                self.persist()
        if check.version is None:
            reason = REASON_KILL_SWITCH if release.kill_switch else REASON_NO_PACKAGE
            with self._lock:
                replaced = self.state.last_good
                self.state.to_default(reason)
                self._swapped(replaced)
            return UpdateEvent(self.scene, "default_policy", None, reason)
        with self._lock:
            state = self.state
            if state.active is not None and state.active.version == check.version:
                return UpdateEvent(self.scene, "unchanged", check.version, REASON_OK)
            if check.version in self.bad_versions:
                return UpdateEvent(self.scene, "rejected", check.version, self.bad_versions[check.version])
            reuse = state.last_good if state.last_good and state.last_good.version == check.version else None
        if check.archive_path is None or check.sha256 is None:
            raise RuntimeError("updater returned a version without a verified archive")
        try:
            slot = reuse or self.load(check.archive_path, check.sha256)
        except PackageError as e:
            with self._lock:
                self.bad_versions[check.version] = e.reason
                if self.state.mode is Mode.DEFAULT and self.state.active is None:
                    self.state.reason = e.reason
                self.persist()
            return UpdateEvent(self.scene, "rejected", check.version, e.reason, str(e))
        except OSError as e:
            return UpdateEvent(self.scene, "failed", check.version, "cache_error", str(e))
        except SandboxUnavailableError as e:  # not the package's fault: try again at the next check
            return UpdateEvent(self.scene, "failed", check.version, e.reason, str(e))
        with self._lock:
            if self.closed:
                slot.contained.close()
                return UpdateEvent(self.scene, "failed", check.version, REASON_INTERNAL_ERROR, "runtime closed")
            replaced = self.state.last_good
            slot.forget_failures()
            self.state.install(slot)
            self._swapped(replaced)
        return UpdateEvent(self.scene, "installed", check.version, REASON_OK)

    def demote(self, reason: str) -> None:
        """The active package failed for good: mark it bad, last-known-good takes over (lock held)."""
        active = self.state.active
        assert active is not None
        self.bad_versions[active.version] = reason
        self._swapped(self.state.demote())

    def drop_last_good(self) -> None:
        """The last-known-good package failed too: stop it and forget it (lock held)."""
        self._retire(self.state.drop_last_good())

    def _swapped(self, replaced: Slot | None) -> None:
        """After a transition (lock held): stop ``replaced`` if nothing holds it, tell `on_swap`, persist."""
        self._retire(replaced)
        self._on_swap()
        self.persist()

    def _retire(self, slot: Slot | None) -> None:
        """Stop the code of a package no longer active nor last-known-good (lock held)."""
        if slot is not None and slot is not self.state.active and slot is not self.state.last_good:
            slot.contained.close()

    def close(self) -> None:
        """Stop every package's code; nothing is installed afterwards."""
        with self._lock:
            self.closed = True
            slots = (self.state.active, self.state.last_good)
        for slot in slots:
            if slot is not None:
                slot.contained.close()
