"""Where a package's code runs: a worker process, a worker thread, or the caller's thread.

A backend is created by loading a package (import, model, warm-up) under a deadline and then
answers `Backend.call` one at a time: fold views into the feature state, predict candidates.
It is the only place that knows *how* the package is isolated; `ContainedPackage` above it
adds the self-test, the history replay and restarts, the same for every mode.

What a call can end in, whatever the mode: an answer; `CallTimeoutError` at its deadline
(the call is abandoned; a later call finds the backend busy and fails at once until it is
free again); `InferenceError` when the package raised or answered nonsense; `WorkerLostError`
when the backend can no longer answer (the process died or was killed, or the thread stayed
stuck ``kill_after_s`` past a deadline).
"""

from __future__ import annotations

import json
import math
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pitahaya.client_runtime.containment import wire
from pitahaya.client_runtime.containment.wire import Step
from pitahaya.client_runtime.containment.limits import Limits
from pitahaya.client_runtime.errors import (
    CallTimeoutError,
    FeatureCodeError,
    InferenceError,
    LoadTimeoutError,
    ModelLoadError,
    PackageError,
    PackageFormatError,
    ResourceLimitError,
    SandboxCrashError,
    SandboxUnavailableError,
    SelfTestError,
    WorkerLostError,
)
from pitahaya.client_runtime.loader import Engine, LoadedPackage, load_failure
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, Package

#: A step's answer: the model's outputs (`Manifest.outputs` per candidate, row after row), and
#: the feature matrix when asked for.
Answer = tuple[tuple[float, ...], np.ndarray | None]


class Backend(Protocol):
    """A loaded package behind some isolation; one call at a time."""

    def call(self, step: Step, deadline: float) -> Answer:
        """Run ``step`` (see `pitahaya.client_runtime.loader.Engine.step`) by ``deadline`` (`time.monotonic`).

        Raises:
            CallTimeoutError, WorkerLostError, InferenceError: see the module docstring.
            wire.RequestTooLarge: the request cannot be sent (the caller's input).
        """
        ...

    #: `time.monotonic` instant by which loading (import through self-test and replay) must end:
    #: ``load_timeout_s`` after the package's code started, not counting our own start-up.
    load_deadline: float

    def serving(self) -> None:
        """Loading is over (self-test and replay passed): lift what only bounded the load."""
        ...

    def close(self) -> None:
        """Stop the package's code for good (kill the worker; abandon a stuck thread)."""
        ...


#: Load failures a worker may report, by reason code: only these classes are ever built from
#: what a worker says, and anything else is a feature-code error.
_LOAD_ERRORS: dict[str, type[PackageError]] = {
    cls.reason: cls for cls in (PackageFormatError, FeatureCodeError, ModelLoadError, SelfTestError, ResourceLimitError)
}


# ----------------------------------------------------------------------------- process
_BOOTSTRAP = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from pitahaya.client_runtime.containment.worker import main; main(sys.argv[1])"
)
_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
_ENV_KEPT_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_")


def _worker_env(workdir: Path) -> dict[str, str]:
    """An allow-listed environment: no tokens, passwords or cloud credentials of the host."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEPT or k.startswith(_ENV_KEPT_PREFIXES)}
    env.update(HOME=str(workdir), TMPDIR=str(workdir), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


class ProcessBackend:
    """The package in a sandboxed worker process, called through a shared page and doorbells.

    Args:
        package: The verified package (its ``selftest.json`` is not sent to the worker).
        workdir: The worker's own, empty folder: the only place it may write.
        limits: Deadlines and resource limits.

    Raises:
        LoadTimeoutError: loading ran past ``limits.load_timeout_s`` after the worker was ready.
        ResourceLimitError: the worker ran out of memory or CPU time while loading.
        SandboxCrashError: the worker died while loading the package.
        SandboxUnavailableError: no worker could be started (not the package's fault).
        PackageError: the worker reported the package bad (import, model).
    """

    def __init__(self, package: Package, workdir: Path, limits: Limits) -> None:
        self._limits = limits
        self.load_deadline = math.inf
        self._width = len(package.manifest.feature_names)
        self._outputs = package.manifest.outputs
        self._lock = threading.Lock()
        self._seq = 0
        self._abandoned = 0
        self._lost: str | None = None
        self._timer: threading.Timer | None = None
        self._page_fd, self._page = wire.open_page()
        self._request_bell, self._response_bell = wire.Doorbell(), wire.Doorbell()
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        config = {
            "control_in": to_worker_r,
            "control_out": from_worker_w,
            "page_fd": self._page_fd,
            "request_bell": self._request_bell.read_fd,
            "response_bell": self._response_bell.write_fd,
            "workdir": str(workdir),
            "memory_bytes": limits.memory_bytes,
            "cpu_s": limits.cpu_s,
            "file_bytes": limits.file_bytes,
        }
        paths = [p for p in sys.path if p and os.path.isabs(p)]
        self._log_path = workdir / "worker.log"
        try:
            with open(self._log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(config), json.dumps(paths)],
                    pass_fds=(
                        to_worker_r,
                        from_worker_w,
                        self._page_fd,
                        *self._request_bell.fds,
                        *self._response_bell.fds,
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=workdir,
                    env=_worker_env(workdir),
                    start_new_session=True,
                )
        except OSError as e:
            for fd in (to_worker_r, from_worker_w, self._to_worker, self._from_worker, self._page_fd):
                os.close(fd)
            self._request_bell.close()
            self._response_bell.close()
            raise SandboxUnavailableError(f"could not start a worker process: {e}") from e
        os.close(to_worker_r)
        os.close(from_worker_w)
        self._poller = select.poll()
        self._poller.register(self._response_bell.read_fd, select.POLLIN)
        self._poller.register(self._from_worker, select.POLLIN | select.POLLHUP)
        try:
            self._load(package)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def _load(self, package: Package) -> None:
        try:
            ready, _ = wire.read_frame(self._from_worker, deadline=time.monotonic() + self._limits.start_timeout_s)
        except (TimeoutError, wire.ChannelClosed, ValueError) as e:
            raise SandboxUnavailableError(f"the worker did not start ({e}); its log ends: {self._log_tail()}") from e
        self.load_deadline = time.monotonic() + self._limits.load_timeout_s  # the package's code starts now
        self.walls = ready.get("walls", {})
        try:
            blobs = (package.files[FEATURES_FILE], package.files[MODEL_FILE])
            header = {"manifest": package.manifest.to_dict(), "sha256": package.sha256}
            wire.send_frame(self._to_worker, header, blobs)
            reply, _ = wire.read_frame(self._from_worker, deadline=self.load_deadline)
        except TimeoutError as e:
            raise LoadTimeoutError(f"package {package.manifest.version} did not load in time: {e}") from e
        except (wire.ChannelClosed, ValueError) as e:
            raise self._death(f"while loading {package.manifest.version}") from e
        if not reply.get("ok"):
            error = _LOAD_ERRORS.get(str(reply.get("reason")), FeatureCodeError)
            raise error(str(reply.get("message", "the worker refused the package"))[:1000])

    def _log_tail(self) -> str:
        """The end of the worker's stderr (our own start-up's errors land there)."""
        try:
            return self._log_path.read_bytes()[-500:].decode("utf-8", "replace").strip() or "(empty)"
        except OSError:
            return "(unreadable)"

    def _death(self, when: str) -> PackageError:
        """The error for a worker that died ``when``: out of CPU or memory, or a crash."""
        try:
            code = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        if code == -signal.SIGXCPU:
            return ResourceLimitError(f"the worker ran out of its {self._limits.cpu_s:g} CPU seconds {when}")
        if code == -signal.SIGKILL:  # what the kernel's OOM killer sends
            return ResourceLimitError(f"the worker was killed (out of memory?) {when}")
        return SandboxCrashError(f"the worker exited with code {code} {when}")

    def serving(self) -> None:
        if hasattr(resource, "prlimit"):
            try:
                resource.prlimit(self._process.pid, resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)
            except (OSError, ValueError):
                pass  # a limit we cannot lift only ends the worker early; it is restarted

    def call(self, step: Step, deadline: float) -> Answer:
        with self._lock:
            if self._lost is not None:
                raise WorkerLostError(self._lost)
            if self._abandoned:
                if wire.response_seq(self._page) != self._abandoned:
                    raise CallTimeoutError("the worker is still busy with a call that ran past its deadline")
                self._abandoned = 0
                if self._timer is not None:
                    self._timer.cancel()
            # Views that do not fit in one page (a long history to replay) go ahead in calls of their own.
            while len(step.views) > (fit := wire.fitting_views(step.views)):
                self._round_trip(Step(step.reset, step.views[:fit], (), step.now), deadline)
                step = replace(step, reset=False, views=step.views[fit:])
            return self._round_trip(step, deadline)

    def _round_trip(self, step: Step, deadline: float) -> Answer:
        """Send one request and read its answer by ``deadline`` (lock held)."""
        self._seq += 1
        seq = self._seq
        wire.write_request(self._page, seq, step)
        wire.Doorbell.ring(self._request_bell.write_fd)
        if not self._wait(seq, deadline):
            self._abandoned = seq
            self._timer = threading.Timer(self._limits.kill_after_s, self._kill_if_still_busy, (seq,))
            self._timer.daemon = True
            self._timer.start()
            raise CallTimeoutError("the package did not answer before the deadline")
        try:
            return wire.read_response(
                self._page, len(step.candidates), self._outputs, self._width if step.want_features else 0
            )
        except wire.StepFailed as e:
            raise InferenceError(str(e)) from e

    def _wait(self, seq: int, deadline: float) -> bool:
        """Wait for the answer to ``seq``: spin briefly, then sleep on the doorbell (lock held)."""
        page = self._page
        if wire.SPIN_S:
            spin_until = min(deadline, time.monotonic() + wire.SPIN_S)
            while wire.response_seq(page) != seq:
                if time.monotonic() >= spin_until:
                    break
                os.sched_yield()
            else:
                return True
        while wire.response_seq(page) != seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for fd, _ in self._poller.poll(math.ceil(remaining * 1000)):
                if fd == self._from_worker:
                    self._lost = f"the worker exited ({self._process.poll()})"
                    raise WorkerLostError(self._lost)
                wire.Doorbell.drain(fd)
        return True

    def _kill_if_still_busy(self, seq: int) -> None:
        with self._lock:
            if self._abandoned == seq and wire.response_seq(self._page) != seq and self._lost is None:
                self._lost = f"killed: a call was still running {self._limits.kill_after_s:g} s past its deadline"
                self._process.kill()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._lost = self._lost or "closed"
        for fd in (self._to_worker, self._from_worker, self._page_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._request_bell.close()
        self._response_bell.close()


# ----------------------------------------------------------------------------- thread
class _Job:
    __slots__ = ("done", "error", "result", "step")

    def __init__(self, step: Step | None) -> None:
        self.step = step
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def _run_step(engine: Engine, step: Step) -> Answer:
    """``step`` on an engine of this process, its answer copied out of the engine's buffers."""
    features, predictions = engine.step(step.reset, step.views, step.candidates, step.now)
    return tuple(predictions.tolist()), features.copy() if step.want_features else None


class ThreadBackend:
    """The package on a worker thread of this process: deadlines, but no memory bound or kill.

    A call or load past its deadline is abandoned; the thread may stay stuck in the package's
    code for good (Python cannot stop a thread), so it is then left behind and the backend
    reports itself lost after ``kill_after_s``. Everything the package raises, ``SystemExit``
    included, is caught on that thread.
    """

    def __init__(self, package: Package, limits: Limits) -> None:
        self._limits = limits
        self.load_deadline = time.monotonic() + limits.load_timeout_s
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._busy: _Job | None = None
        self._lost: str | None = None
        self._engine: Engine | None = None
        thread = threading.Thread(target=self._run, args=(package,), name="pitahaya-package", daemon=True)
        loading = _Job(None)
        self._jobs.put(loading)
        thread.start()
        if not loading.done.wait(max(0.0, self.load_deadline - time.monotonic())):
            self.close()
            raise LoadTimeoutError(f"package {package.manifest.version} did not load in time")
        if loading.error is not None:
            raise loading.error

    def _run(self, package: Package) -> None:
        loading = self._jobs.get()
        try:
            self._engine = Engine(LoadedPackage.load(package, selftest=False))
        except BaseException as e:  # the package's code may raise anything, SystemExit included
            loading.error = load_failure(e)
        loading.done.set()
        while self._engine is not None:
            job = self._jobs.get()
            engine = self._engine
            if job.step is None or engine is None:
                return  # closed, or abandoned while this thread was stuck
            try:
                job.result = _run_step(engine, job.step)
            except BaseException as e:  # the package's code may raise anything, SystemExit included
                job.error = InferenceError(f"{type(e).__name__}: {e}")
            job.done.set()

    def serving(self) -> None:
        """Nothing to lift: a thread has no resource limits of its own."""

    def call(self, step: Step, deadline: float) -> Answer:
        with self._lock:
            if self._lost is not None:
                raise WorkerLostError(self._lost)
            if self._busy is not None:
                if not self._busy.done.is_set():
                    raise CallTimeoutError("the package is still busy with a call that ran past its deadline")
                self._busy = None
            job = _Job(step)
            self._jobs.put(job)
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                self._busy = job
                timer = threading.Timer(self._limits.kill_after_s, self._abandon_if_still_busy, (job,))
                timer.daemon = True
                timer.start()
                raise CallTimeoutError("the package did not answer before the deadline")
            if job.error is not None:
                raise job.error
            return job.result

    def _abandon_if_still_busy(self, job: _Job) -> None:
        with self._lock:
            if self._busy is job and not job.done.is_set():
                self._lost = f"abandoned: a call was still running {self._limits.kill_after_s:g} s past its deadline"
                self._engine = None

    def close(self) -> None:
        self._lost = self._lost or "closed"
        self._engine = None
        self._jobs.put(_Job(None))  # wakes an idle thread, which then ends


# ----------------------------------------------------------------------------- inline
class InlineBackend:
    """The package on the caller's thread: no deadline, no isolation; for code you wrote yourself.

    Whatever the package raises (``SystemExit`` included) is still turned into an error.
    """

    def __init__(self, package: Package) -> None:
        self.load_deadline = math.inf
        try:
            self._engine = Engine(LoadedPackage.load(package, selftest=False))
        except BaseException as e:  # the package's code may raise anything, SystemExit included
            raise load_failure(e) from e

    def serving(self) -> None:
        """Nothing to lift."""

    def call(self, step: Step, deadline: float) -> Answer:
        try:
            return _run_step(self._engine, step)
        except BaseException as e:  # the package's code may raise anything, SystemExit included
            raise InferenceError(f"{type(e).__name__}: {e}") from e

    def close(self) -> None:
        """Nothing runs on its own."""
