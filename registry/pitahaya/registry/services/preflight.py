"""Pre-flight: at push, load the package as a device would, and refuse what a device would reject.

Why. TUF tells a device *who* published a package, not whether its ``features.py`` behaves;
devices contain publisher code whatever the registry does. But a package that every device
will reject (it hangs at import, exits, allocates without bound, fails its self-test) should
not be stored, signed and rolled out first. So `preflight_package` runs before anything is
stored or signed: `pitahaya.client_runtime.preflight` loads the package in a sandboxed worker
process, never in this server's interpreter, imports ``features.py``, loads the model, warms
it up and asks for the golden cases' answers, which this process judges; all within the load
deadline and memory limit of `Settings` (the device's defaults unless set).

Concurrency. Each pre-flight is a worker process busy for up to its load deadline, so one
server process runs at most ``preflight_concurrency`` at once. The push route is synchronous
(FastAPI runs it on its thread pool), so neither waiting nor running blocks the event loop; a
push waits at most ``preflight_wait_seconds`` for a slot, then gets `BusyError` (503 with
``Retry-After``) rather than joining an unbounded queue.

What the publisher sees. A refusal is a `PreflightError` (422) with the device's reason code
and the registry's own explanation, not the package's words (its exception text, the values
it computed): the worker may read whatever the server's user can read, so echoing them would
be a way to carry those files out of the sandbox. The full message goes to the audit log
(operators) and the publisher gets it by running `preflight` on the archive locally.

Audit. A pass is recorded in the push's own entry (``detail.preflight``: outcome and
seconds, or ``skipped`` when turned off); a refusal gets an entry of its own,
``refuse_package``, committed at once since the push stops there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pitahaya.client_runtime import Limits, Package, PackageError, SandboxUnavailableError
from pitahaya.client_runtime import preflight as load_as_device
from pitahaya.registry.errors import BusyError, PreflightError, StorageUnavailableError
from pitahaya.registry.services.audit import log_action
from pitahaya.registry.settings import Settings

logger = logging.getLogger(__name__)

#: What each reason code means, in the registry's words (the package's own are not echoed).
_EXPLANATIONS = {
    "package_format": "its files do not form a package a device can load",
    "feature_code": "features.py failed to import, or raised while answering its self-test",
    "model_load": "ONNX Runtime could not load or run its model",
    "self_test": "its answers differ from the golden cases in selftest.json (or those are malformed)",
    "load_timeout": "it did not load and answer its self-test within the load deadline",
    "resource_limit": "its worker ran out of memory or CPU time while loading",
    "sandbox_crash": "its worker process exited or crashed while loading",
}


@dataclass
class Preflight:
    """The pre-flight of one server process: whether it runs, its limits, folder and slots.

    Attributes:
        enabled: False pushes packages unchecked (tests of device-side containment, trusted CI).
        limits: What the worker may take (load deadline, memory).
        sandbox_root: Folder under which each pre-flight's worker gets its own, removed
            afterwards whatever the outcome (a worker may have written there).
        concurrency: Pre-flights running at once.
        wait_s: How long a push waits for a free slot before `BusyError`.
    """

    enabled: bool
    limits: Limits
    sandbox_root: Path
    concurrency: int
    wait_s: float
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.concurrency)

    @classmethod
    def from_settings(cls, settings: Settings) -> Preflight:
        return cls(
            enabled=settings.preflight_enabled,
            limits=Limits(
                load_timeout_s=settings.preflight_load_timeout_seconds,
                memory_bytes=settings.preflight_memory_bytes,
            ),
            sandbox_root=settings.preflight_dir,
            concurrency=settings.preflight_concurrency,
            wait_s=settings.preflight_wait_seconds,
        )

    def run(self, package: Package) -> float:
        """Load ``package`` as a device would, in a free slot; returns the seconds it took.

        Raises:
            BusyError: no slot came free within ``wait_s``.
            PackageError: what a device would reject the package for.
            OSError: no worker could be started (its folder or its process).
        """
        if not self._slots.acquire(timeout=self.wait_s):
            retry_after = max(1, round(self.limits.load_timeout_s))
            raise BusyError(f"all {self.concurrency} pre-flight slots are busy; retry in {retry_after} s", retry_after)
        try:
            self.sandbox_root.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            # The worker gets its own folder under sandbox_root, removed whatever the outcome.
            load_as_device(package, limits=self.limits, sandbox_root=self.sandbox_root)
            return time.monotonic() - started
        finally:
            self._slots.release()


def preflight_package(*, session: Session, preflight: Preflight, package: Package, actor: str) -> dict[str, Any]:
    """Pre-flight a package about to be pushed, before anything is stored or signed.

    ``session`` must have nothing pending: it is rolled back first, so that no database
    connection is held for the seconds a pre-flight may take.

    Args:
        package: The validated package (`read_package`).
        actor: Who pushes (the audit log's actor of a refusal).

    Returns:
        What the push's audit entry records: ``{"outcome": "passed", "seconds": ...}``, or
        ``{"outcome": "skipped"}`` when pre-flight is turned off.

    Raises:
        PreflightError: a device would reject the package (the refusal is in the audit log).
        BusyError: every pre-flight slot stayed busy (503; nothing was run).
        StorageUnavailableError: no worker could be started, e.g. a full disk (503).
    """
    if not preflight.enabled:
        return {"outcome": "skipped"}
    session.rollback()
    manifest = package.manifest
    try:
        seconds = preflight.run(package)
    except PackageError as e:
        _log_refusal(session=session, actor=actor, package=package, error=e)
        explanation = _EXPLANATIONS.get(e.reason, "a device would not load it")
        raise PreflightError(
            f"pre-flight refused {manifest.scene} {manifest.version} ({e.reason}): {explanation}; devices would "
            "refuse it too. Run pitahaya.client_runtime.preflight on the archive for the package's own error.",
            e.reason,
        ) from e
    except (OSError, SandboxUnavailableError) as e:  # the server's trouble, not the package's: retry later
        raise StorageUnavailableError(f"the registry could not start a pre-flight worker: {e}") from e
    return {"outcome": "passed", "seconds": round(seconds, 3)}


def _log_refusal(*, session: Session, actor: str, package: Package, error: PackageError) -> None:
    """Commit the refusal's audit entry; a database failure is logged, the refusal stands."""
    detail = {
        "scene": package.manifest.scene,
        "version": package.manifest.version,
        "sha256": package.sha256,
        "reason": error.reason,
        "message": str(error)[:1000],
    }
    log_action(session=session, actor=actor, action="refuse_package", detail=detail)
    try:
        session.commit()
    except SQLAlchemyError:
        session.rollback()
        logger.exception("could not record the pre-flight refusal of %s %s", detail["scene"], detail["version"])
