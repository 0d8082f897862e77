"""Runtime state machine and fallback chain, driven through the updater seam (`LocalUpdater`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pitahaya.client_runtime import (
    FIXED_BYTES,
    Candidate,
    Hooks,
    InferenceEvent,
    LoadedPackage,
    PolicyKnobs,
    PreloadPlanner,
    View,
    read_package,
)

from package_factory import failing_on_long_candidates, make_archive, sample_views, scene_policy
from runtime_support import CANDIDATES, LocalUpdater, Recorder, make_runtime


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
    updater.publish(failing_on_long_candidates("1.0.1"), "1.0.1")
    assert rt.refresh().outcome == "installed"
    poison = [Candidate("long", 5000.0, 9_000_000)]
    decisions = [rt.predict(poison) for _ in range(5)]
    # Each failing call is answered by the last-known-good package in the same call ...
    assert [(d.reason, d.package_version, d.used_model) for d in decisions] == [("inference_error", "1.0.0", True)] * 5
    assert hooks.fallbacks == ["inference_error"] * 5
    # Monitoring counts them against the package that failed, not the one that covered for it.
    assert [e.active_version for e in hooks.inferences[-5:]] == ["1.0.1"] * 5
    # ... and after breaker_failures in a row it takes over for good; 1.0.1 is remembered as bad.
    assert rt.active_version == "1.0.0" and rt.last_known_good_version is None
    assert (hooks.updates[-1].outcome, hooks.updates[-1].version) == ("demoted", "1.0.0")
    assert rt.predict(poison).reason == "ok"
    assert hooks.inferences[-1].active_version == "1.0.0"
    assert rt.refresh().outcome == "rejected"  # 1.0.1 is never retried


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


def test_buffer_ahead_of_the_playing_video_uses_its_earlier_prediction(tmp_path: Path) -> None:
    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater)
    rt.refresh()
    first = rt.predict(CANDIDATES, now=1_700_001_000.0)
    assert first.watch_s is not None and first.plan.buffer_ahead_s is None  # nothing playing yet
    nxt = [Candidate("c4", 20.0, 2_000_000)]
    decision = rt.predict(nxt, now=1_700_001_005.0, playing=CANDIDATES[0], played_s=1.0)
    knobs = PolicyKnobs.from_policy(scene_policy())
    want = min(knobs.buffer_max_s, (first.watch_s[0] - 1.0) * knobs.buffer_safety)
    assert decision.plan.buffer_ahead_s == pytest.approx(want)
    assert decision.plan.buffer_floor_s == knobs.buffer_floor_s
    unknown = rt.predict(nxt, playing=Candidate("never-predicted", 10.0, 1_000_000))
    assert unknown.plan.buffer_ahead_s is None


def test_predict_survives_garbage_input(tmp_path: Path) -> None:
    hooks = Recorder()
    rt = make_runtime(tmp_path, hooks=hooks)
    decision = rt.predict(None)  # type: ignore[arg-type]
    assert decision.reason == "internal_error" and decision.plan.items == ()
    assert [where for where, _ in hooks.errors] == ["predict"]


def test_invalid_candidates_are_not_held_against_the_package(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, hooks)
    rt.refresh()
    broken = [Candidate("negative", 10.0, -5)]  # features.py takes the log of the size
    assert [rt.predict(broken).reason for _ in range(10)] == ["invalid_input"] * 10
    figures_not_stats = [Candidate("v", 10.0, 1_000_000, item={"views": 3})]  # type: ignore[arg-type]
    assert [rt.predict(figures_not_stats).reason for _ in range(10)] == ["invalid_input"] * 10
    assert rt.active_version == "1.0.0" and rt.predict(CANDIDATES).reason == "ok"  # no breaker tripped


def test_videos_of_unknown_length_are_predicted_and_preloaded_as_the_default_does(tmp_path: Path) -> None:
    """An image post in the history and candidates with no length or size: the model answers in both
    isolation modes alike, and the plan preloads what has no byte rate as the default policy does."""
    updater = LocalUpdater(tmp_path / "packages")
    updater.publish(make_archive(), "1.0.0")
    image = View("u", "post", 1_700_000_000.0, None, 7.0, None)
    later = View("u", "clip", 1_700_000_010.0, 20.0, 5.0, 2_500_000)
    candidates = [
        Candidate("no-length", None, None),
        Candidate("known", 1000.0, 1_000_000),
        Candidate("no-size", 30.0, None),
    ]
    answers = {}
    for isolation in ("inline", "process"):
        rt = make_runtime(tmp_path / isolation, updater, isolation=isolation)
        rt.refresh()
        for view in (image, later):
            rt.record(view)
        decision = rt.predict(candidates, now=1_700_000_020.0, playing=Candidate("post-2", None, None))
        assert decision.reason == "ok" and decision.watch_s is not None
        assert all(w >= 0 for w in decision.watch_s)
        bytes_of = {item.video_id: item.bytes for item in decision.plan.items}
        assert bytes_of["no-length"] == bytes_of["no-size"] == FIXED_BYTES  # the default's 800 KB
        # sized by its prediction: at 1 KB/s, the 800 KB cap would take a predicted 640 s
        assert bytes_of["known"] < FIXED_BYTES
        assert decision.plan.buffer_ahead_s is None  # no byte rate for the playing post: the player's default
        answers[isolation] = decision.watch_s
        rt.close()
    assert answers["inline"] == answers["process"]


def test_a_package_predicting_quantiles_answers_them_sorted_and_plans_by_the_chosen_levels(tmp_path: Path) -> None:
    """A model outputting the point and two quantile levels whose heads cross: every isolation
    mode answers each candidate's quantiles sorted, the preloads are sized by
    ``preload_quantile``, and the playing video's buffer is capped by ``buffer_quantile``, then,
    once outlived, by the higher level."""
    levels = (0.2, 0.8)
    archive = make_archive(quantiles=levels, policy={"preload_quantile": 0.2, "buffer_quantile": 0.2})
    loaded = LoadedPackage.load(read_package(archive))
    history = sample_views()
    # long videos at a few KB/s: each predicted minute is a few hundred KB, under the 800 KB cap
    candidates = [Candidate("a", 600.0, 2_000_000), Candidate("b", 600.0, 3_000_000), Candidate("c", 600.0, 2_400_000)]
    now = history[-1].end_ts + 1.0
    columns = loaded.infer(loaded.features_for(history, candidates, now)).reshape(len(candidates), 3).tolist()
    assert any(q_low > q_high for _, q_low, q_high in columns)  # the heads cross: sorting is exercised
    sorted_quantiles = tuple(tuple(sorted(row[1:])) for row in columns)
    knobs = PolicyKnobs.from_policy(loaded.manifest.policy, levels)
    expected_plan = PreloadPlanner().plan(candidates, [low for low, _ in sorted_quantiles], knobs)
    assert expected_plan != PreloadPlanner().plan(candidates, [row[0] for row in columns], knobs)

    updater = LocalUpdater(tmp_path / "packages")
    updater.publish(archive, "1.0.0")
    for isolation in ("inline", "thread", "process"):
        rt = make_runtime(tmp_path / isolation, updater, isolation=isolation)
        rt.refresh()
        for view in history:
            rt.record(view)
        decision = rt.predict(candidates, now=now)
        assert decision.reason == "ok", isolation
        assert decision.watch_s == tuple(row[0] for row in columns)
        assert decision.quantile_levels == levels and decision.watch_quantiles == sorted_quantiles
        assert decision.plan.items == expected_plan.items
        later = rt.predict(candidates[1:], now=now + 1.0, playing=candidates[0], played_s=2.0)
        low, high = (knobs.buffer_safety * (q - 2.0) for q in sorted_quantiles[0])
        assert low < high < knobs.buffer_max_s  # the staircase is exercised
        assert later.plan.buffer_ahead_s == pytest.approx(low)
        assert later.plan.buffer_then_s == pytest.approx((high,))
        rt.close()
