"""Test doubles of the runtime's seams: an updater that serves archives from memory, a hook recorder.

`LocalUpdater` replaces only the network: it serves archives as if TUF had verified them
(the real HTTP + TUF path is covered in test_tuf_attacks.py and end to end in the root tests/).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pitahaya.client_runtime import (
    Candidate,
    ClientRuntimeError,
    Hooks,
    InferenceEvent,
    Limits,
    PackageUpdater,
    Release,
    Runtime,
    RuntimeConfig,
    UpdateCheck,
    UpdateDownloadError,
    UpdateEvent,
)

#: Runtimes of these tests wait long for a package: only tests about timeouts set a short deadline,
#: so a busy 2-core CI machine never turns an honest call into a timeout.
PATIENT = RuntimeConfig(limits=Limits(call_timeout_s=10.0, max_call_timeout_s=10.0))

CANDIDATES = [Candidate("c1", 12.0, 1_500_000), Candidate("c2", 60.0, 9_000_000), Candidate("c3", 30.0, 3_000_000)]


class LocalUpdater(PackageUpdater):
    """Serves whatever `publish` was given last; `offline` makes every check fail."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__("http://unused", "watch_time", "device-1", cache_dir)
        self.archive: bytes | None = None
        self.version: str | None = None
        self.kill_switch = False
        self.offline = False
        self.release_id = 1
        self.error: ClientRuntimeError | None = None
        self.checks = 0

    def publish(self, archive: bytes, version: str) -> None:
        self.archive, self.version = archive, version

    def check(self) -> UpdateCheck:
        self.checks += 1
        if self.offline:
            raise UpdateDownloadError("registry unreachable")
        if self.error is not None:
            raise self.error
        release = Release(
            "watch_time", "stable", self.release_id, self.version or "0.0.1", kill_switch=self.kill_switch
        )
        if self.kill_switch or self.archive is None:
            return UpdateCheck(release=release, version=None)
        sha = hashlib.sha256(self.archive).hexdigest()
        path = self.cached_archive(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.archive)
        return UpdateCheck(release=release, version=self.version, archive_path=path, sha256=sha)


class Recorder(Hooks):
    def __init__(self) -> None:
        self.inferences: list[InferenceEvent] = []
        self.fallbacks: list[str] = []
        self.updates: list[UpdateEvent] = []
        self.outcomes: list[tuple[int, float, float]] = []
        self.errors: list[tuple[str, BaseException]] = []

    def on_error(self, where: str, error: BaseException) -> None:
        self.errors.append((where, error))

    def on_inference(self, event: InferenceEvent) -> None:
        self.inferences.append(event)

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        self.fallbacks.append(reason)

    def on_update(self, event: UpdateEvent) -> None:
        self.updates.append(event)

    def on_outcome(self, prediction_id: int, predicted_s: float, actual_s: float) -> None:
        self.outcomes.append((prediction_id, predicted_s, actual_s))


def make_runtime(
    tmp_path: Path, updater: LocalUpdater | None = None, hooks: Hooks | None = None, **kwargs: Any
) -> Runtime:
    updater = updater or LocalUpdater(tmp_path)
    kwargs.setdefault("config", PATIENT)
    return Runtime(
        "http://unused", "watch_time", "device-1", cache_dir=tmp_path, updater=updater, hooks=hooks, **kwargs
    )


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
