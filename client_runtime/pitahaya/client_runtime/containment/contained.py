"""A verified package loaded behind an isolation mode: self-test judged here, replay, restarts.

`ContainedPackage` is what the runtime holds per installed version. Loading it:

1. parse ``selftest.json`` *here*, from the verified archive, before any package code runs;
2. start the backend (worker process, thread or inline) and load the package in it;
3. ask it for the answer to every golden case, as ordinary calls, and judge them here
   (`pitahaya.client_runtime.selftest`): the package never sees the expected values and,
   under ``process``, cannot reach the code that compares;
4. replay the device's recent views into a fresh feature state;

all within one load deadline. After that, `predict` sends the views recorded since the last
call with the candidates, so recording a view never runs package code on the host's thread.

A backend that is lost (its worker died or was killed after a stuck call) is restarted on a
background thread, going through all four steps again; calls fail fast with
`WorkerLostError` meanwhile. After ``max_restarts`` restarts with no successful call in
between, it stays down: the runtime's circuit breaker has long taken it out of service.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pitahaya.client_runtime.containment.backends import Backend, InlineBackend, ProcessBackend, ThreadBackend
from pitahaya.client_runtime.containment.limits import Isolation, Limits, checked_isolation
from pitahaya.client_runtime.containment.wire import Step
from pitahaya.client_runtime.errors import (
    CallError,
    CallTimeoutError,
    FeatureCodeError,
    InferenceError,
    LoadTimeoutError,
    SandboxCrashError,
    WorkerLostError,
)
from pitahaya.client_runtime.events import Candidate
from pitahaya.client_runtime.history import RecentViews
from pitahaya.client_runtime.package import Package
from pitahaya.client_runtime.policy import package_knobs
from pitahaya.client_runtime.selftest import SelftestCase, check_answers, parse_cases


class ContainedPackage:
    """A package loaded behind ``isolation``, answering `predict` within its deadline.

    Args:
        package: The verified package.
        isolation: ``process`` (default), ``thread`` or ``inline``; see `Isolation`.
        limits: The runtime's limits; the scene's ``call_timeout_ms`` applies up to their ceiling.
        sandbox_root: Folder under which a worker process gets its own empty folder.
        views: The device's recent views (replayed at load, then fed to every call).

    Raises:
        PackageError: the package failed to load, its self-test or the replay, or its planner
            knobs are out of range (a subclass says which: `LoadTimeoutError`, `SelfTestError`,
            `ResourceLimitError`, `PackageFormatError`, ...).
        ValueError: an unknown isolation mode.
    """

    def __init__(
        self,
        package: Package,
        *,
        isolation: Isolation = "process",
        limits: Limits | None = None,
        sandbox_root: str | Path | None = None,
        views: RecentViews | None = None,
    ) -> None:
        self.isolation = checked_isolation(isolation)
        self.package = package
        self.version = package.manifest.version
        #: The planner's knobs, refused before any package code runs if no device takes them.
        self.knobs = package_knobs(package.manifest.policy, package.manifest.quantiles)
        #: Levels of the quantiles `predict` answers after each candidate's point prediction.
        self.quantiles = package.manifest.quantiles
        self.limits = (limits or Limits()).for_policy(package.manifest.policy)
        self._views = views or RecentViews(0)
        self._sandbox_root = Path(sandbox_root) if sandbox_root is not None else None
        self._cases = parse_cases(package.selftest)
        self._lock = threading.Lock()
        self._applied: int | None = None
        self._restarts = 0
        self._restarting = False
        self._closed = False
        self._folder: Path | None = None
        try:
            self._backend: Backend | None = self._start()
        except BaseException:
            self._remove_folder()
            raise

    # ----------------------------------------------------------------- loading
    def _start(self) -> Backend:
        """Load, self-test and replay under one deadline; returns the ready backend."""
        backend = self._new_backend()
        deadline = backend.load_deadline

        def answer(case: SelftestCase) -> tuple[np.ndarray, np.ndarray]:
            step = Step(True, case.history, case.candidates, case.now, want_features=True)
            predictions, features = backend.call(step, deadline)
            assert features is not None
            return features, np.asarray(predictions, dtype=np.float32)

        try:
            check_answers(self._cases, answer)
            reset, views, count = self._views.since(None)
            backend.call(Step(reset, views, (), 0.0), deadline)
            backend.serving()
        except CallTimeoutError as e:
            backend.close()
            raise LoadTimeoutError(f"package {self.version} did not pass its self-test and replay in time") from e
        except WorkerLostError as e:
            backend.close()
            raise SandboxCrashError(f"the worker of package {self.version} died during its self-test: {e}") from e
        except InferenceError as e:
            backend.close()
            raise FeatureCodeError(f"package {self.version} raised during its self-test or replay: {e}") from e
        except BaseException:
            backend.close()
            raise
        self._applied = count
        return backend

    def _new_backend(self) -> Backend:
        if self.isolation == "inline":
            return InlineBackend(self.package)
        if self.isolation == "thread":
            return ThreadBackend(self.package, self.limits)
        self._remove_folder()
        # Absolute: the worker starts in this folder, where a relative path would mean another one.
        root = (self._sandbox_root or Path(tempfile.gettempdir())).resolve()
        root.mkdir(parents=True, exist_ok=True)
        self._folder = Path(tempfile.mkdtemp(prefix=f"{self.version}-", dir=root))
        return ProcessBackend(self.package, self._folder, self.limits)

    # ----------------------------------------------------------------- calls
    def predict(self, candidates: Sequence[Candidate], now: float, deadline: float) -> tuple[float, ...]:
        """The model's outputs for ``candidates``, by ``deadline`` (`time.monotonic`), row after
        row: per candidate its predicted watch seconds, then one value per level of `quantiles`.

        Raises:
            CallTimeoutError: no answer by the deadline (or still busy with an earlier call).
            WorkerLostError: the backend is down (being restarted, or given up).
            InferenceError: the package raised or answered nonsense.
            RequestTooLarge: too many candidates for one call (the caller's input).
        """
        with self._lock:
            backend = self._backend
            if backend is None:
                self._restart_later()  # a restart that failed is tried again, up to max_restarts
                raise WorkerLostError(f"package {self.version} is not running (restarting or given up)")
            reset, views, count = self._views.since(self._applied)
            try:
                predictions, _ = backend.call(Step(reset, views, candidates, now), deadline)
            except WorkerLostError:
                self._applied = None
                self._restart_later()
                raise
            except CallError:
                self._applied = None  # whether the views were folded in is unknown: rebuild next time
                raise
            self._applied = count
            self._restarts = 0
            return predictions

    def _restart_later(self) -> None:
        """Replace a lost backend on a background thread (lock held)."""
        lost, self._backend = self._backend, None
        if lost is not None:
            lost.close()
        if self._restarting or self._closed or self._restarts >= self.limits.max_restarts:
            return
        self._restarts += 1
        self._restarting = True
        threading.Thread(target=self._restart, name=f"pitahaya-restart-{self.version}", daemon=True).start()

    def _restart(self) -> None:
        try:
            backend: Backend | None = self._start()
        except Exception:  # a package that loaded once and now fails stays down; the breaker sees it
            backend = None
        with self._lock:
            self._restarting = False
            if self._closed and backend is not None:
                backend.close()
            elif backend is not None:
                self._backend = backend

    def close(self) -> None:
        """Stop the package's code and remove its folder."""
        with self._lock:
            self._closed = True
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        self._remove_folder()

    def _remove_folder(self) -> None:
        """Remove the last worker's folder (what the package wrote there goes with it)."""
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def preflight(package: Package, *, limits: Limits | None = None, sandbox_root: str | Path | None = None) -> None:
    """Load ``package`` as a device would, in a sandboxed worker process, and run its self-test.

    What the registry runs at push: a package that passes here loads on devices (as far as a
    machine other than the device can tell); one that fails raises what a device would.

    Raises:
        PackageError: what a device would reject the package for.
    """
    ContainedPackage(package, isolation="process", limits=limits, sandbox_root=sandbox_root).close()
