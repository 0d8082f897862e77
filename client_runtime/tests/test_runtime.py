"""Runtime state machine and fallback chain, driven through the updater seam.

`LocalUpdater` replaces only the network: it serves archives from memory as if TUF had
verified them (the real HTTP + TUF path is covered end to end in the root tests/).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pitahaya.client_runtime import (
    Candidate,
    Hooks,
    InferenceEvent,
    PackageUpdater,
    Release,
    Runtime,
    Scene,
    UpdateCheck,
    UpdateDownloadError,
    UpdateEvent,
)

from package_factory import SCENE_DIR, make_archive, sample_views

CANDIDATES = [Candidate("c1", 12.0, 1_500_000), Candidate("c2", 60.0, 9_000_000), Candidate("c3", 30.0, 3_000_000)]


class LocalUpdater(PackageUpdater):
    """Serves whatever `publish` was given last; `offline` makes every check fail."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__("http://unused", "watch_time", "device-1", cache_dir)
        self.archive: bytes | None = None
        self.version: str | None = None
        self.kill_switch = False
        self.offline = False

    def publish(self, archive: bytes, version: str) -> None:
        self.archive, self.version = archive, version

    def check(self) -> UpdateCheck:
        if self.offline:
            raise UpdateDownloadError("registry unreachable")
        release = Release("watch_time", "stable", 1, self.version or "0.0.1", kill_switch=self.kill_switch)
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

    def on_inference(self, event: InferenceEvent) -> None:
        self.inferences.append(event)

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        self.fallbacks.append(reason)

    def on_update(self, event: UpdateEvent) -> None:
        self.updates.append(event)

    def on_outcome(self, prediction_id: int, predicted_s: float, actual_s: float) -> None:
        self.outcomes.append((prediction_id, predicted_s, actual_s))


def make_runtime(tmp_path: Path, updater: LocalUpdater | None = None, hooks: Hooks | None = None) -> Runtime:
    updater = updater or LocalUpdater(tmp_path)
    return Runtime("http://unused", "watch_time", "device-1", cache_dir=tmp_path, updater=updater, hooks=hooks)


def test_installed_package_answers_and_reports(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, hooks)
    assert rt.refresh().outcome == "installed"
    for view in sample_views():
        rt.record(view)
    decision = rt.predict(CANDIDATES, now=1_700_001_000.0)
    assert decision.reason == "ok" and decision.package_version == "1.0.0"
    assert decision.watch_s is not None and len(decision.watch_s) == 3
    assert len(decision.plan.items) == 3
    assert hooks.inferences[-1].success and hooks.inferences[-1].package_version == "1.0.0"
    rt.observe(decision.prediction_id, 7.5)
    assert hooks.outcomes == [(decision.prediction_id, decision.watch_s[0], 7.5)]


def test_without_any_package_the_default_policy_answers(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.offline = True
    rt = make_runtime(tmp_path, updater, hooks)
    assert rt.refresh().outcome == "failed"
    decision = rt.predict(CANDIDATES)
    assert decision.watch_s is None and decision.reason == "download_failed"
    assert [item.bytes for item in decision.plan.items] == [800_000, 800_000, 800_000]
    assert hooks.fallbacks == ["download_failed"]
    assert hooks.inferences[-1].success is False


def test_bad_package_is_rejected_once_and_never_retried(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(feature_source="import nonexistent_module\n"), "1.0.1")
    rt = make_runtime(tmp_path, updater, hooks)
    first = rt.refresh()
    assert (first.outcome, first.reason) == ("rejected", "feature_code")
    assert rt.predict(CANDIDATES).reason == "feature_code"
    second = rt.refresh()
    assert second.outcome == "rejected" and second.detail == ""  # remembered, not reloaded


def test_kill_switch_forces_default_policy_and_keeps_last_known_good(tmp_path: Path) -> None:
    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater)
    rt.refresh()
    updater.kill_switch = True
    assert rt.refresh().outcome == "default_policy"
    decision = rt.predict(CANDIDATES)
    assert decision.reason == "kill_switch" and decision.watch_s is None
    assert rt.last_known_good_version == "1.0.0"


def test_restart_offline_uses_the_cached_verified_package(tmp_path: Path) -> None:
    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    make_runtime(tmp_path, updater).refresh()
    offline = LocalUpdater(tmp_path)
    offline.offline = True
    rt = make_runtime(tmp_path, offline)
    assert rt.refresh().outcome == "failed"
    assert rt.predict(CANDIDATES).package_version == "1.0.0"


def test_tampered_cache_is_not_loaded_on_restart(tmp_path: Path) -> None:
    updater = LocalUpdater(tmp_path)
    archive = make_archive()
    updater.publish(archive, "1.0.0")
    make_runtime(tmp_path, updater).refresh()
    cached = updater.cached_archive(hashlib.sha256(archive).hexdigest())
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.write_bytes(bytes(data))
    offline = LocalUpdater(tmp_path)
    offline.offline = True
    decision = make_runtime(tmp_path, offline).predict(CANDIDATES)
    assert decision.watch_s is None and decision.package_version is None


def test_repeated_inference_failures_fall_back_to_last_known_good(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, hooks)
    rt.refresh()
    # 1.0.1 passes its self-test but raises on very long candidates.
    source = Scene.load(SCENE_DIR).feature_source.replace(
        "            duration = cand.duration_s\n",
        "            duration = cand.duration_s\n            if duration > 1000:\n                raise ValueError('too long')\n",
    )
    updater.publish(make_archive(version="1.0.1", feature_source=source), "1.0.1")
    assert rt.refresh().outcome == "installed"
    poison = [Candidate("long", 5000.0, 9_000_000)]
    reasons = [rt.predict(poison).reason for _ in range(5)]
    assert reasons == ["inference_error"] * 5
    assert rt.active_version == "1.0.0"
    assert rt.predict(poison).reason == "ok"


def test_a_raising_hook_never_breaks_predict(tmp_path: Path) -> None:
    class Broken(Hooks):
        def on_inference(self, event: InferenceEvent) -> None:
            raise RuntimeError("monitoring is down")

    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, Broken())
    rt.refresh()
    assert rt.predict(CANDIDATES).reason == "ok"


@pytest.mark.parametrize("count", [0, 1, 8])
def test_predict_handles_any_number_of_candidates(tmp_path: Path, count: int) -> None:
    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater)
    rt.refresh()
    cands = [Candidate(f"c{i}", 10.0 + i, 1_000_000) for i in range(count)]
    decision = rt.predict(cands)
    assert len(decision.plan.items) == min(count, 3)
    assert decision.watch_s is not None and len(decision.watch_s) == count
