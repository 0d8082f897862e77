"""The runtime over contained packages: timeouts become fallbacks, hangs never block updates."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from pitahaya.client_runtime import Candidate, Limits, Mode, RuntimeConfig
from pitahaya.client_runtime.containment import CALL_TIMEOUT_KEY
from pitahaya.client_runtime.history import RecentViews
from pitahaya.client_runtime.state import DeviceState, IllegalTransition

from package_factory import hostile_source, make_archive, sample_views
from runtime_support import CANDIDATES, LocalUpdater, Recorder, make_runtime

SLACK_S = 3.0
#: The deadline a slow package asks for (its policy): one it misses by far.
SHORT_DEADLINE_S = 0.2
#: The runtime's: no good package misses it, even on a busy 2-core CI machine.
GENEROUS = Limits(call_timeout_s=5.0, max_call_timeout_s=5.0, load_timeout_s=4.0, kill_after_s=0.5)


def runtime_with(tmp_path: Path, isolation: str = "process", **config):
    updater = LocalUpdater(tmp_path / "cache")
    hooks = Recorder()
    runtime = make_runtime(
        tmp_path / "cache",
        updater,
        hooks,
        config=RuntimeConfig(limits=GENEROUS, isolation=isolation, breaker_failures=3, **config),
    )
    return runtime, updater, hooks


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_slow_package_answers_with_the_default_policy_in_time_then_leaves_service(
    tmp_path: Path, isolation: str
) -> None:
    # The runtime is patient; the slow package asks for a short deadline itself (its policy), so the
    # honest 1.0.0 never times out on a busy machine while 1.1.0 misses its deadline by far.
    runtime, updater, hooks = runtime_with(tmp_path, isolation)
    try:
        updater.publish(make_archive(version="1.0.0"), "1.0.0")
        assert runtime.refresh().outcome == "installed"
        slow = hostile_source(at_import="import time", in_transform="time.sleep(30)")
        short = {CALL_TIMEOUT_KEY: SHORT_DEADLINE_S * 1000}
        updater.publish(make_archive(version="1.1.0", feature_source=slow, policy=short), "1.1.0")
        updater.release_id += 1
        assert runtime.refresh().outcome == "installed"  # its self-test passes: it is slow only afterwards
        started = time.perf_counter()
        decision = runtime.predict(CANDIDATES)
        assert time.perf_counter() - started < SHORT_DEADLINE_S + SLACK_S
        assert (decision.reason, decision.watch_s) == ("timeout", None)
        assert runtime.active_version == "1.1.0"  # one timeout does not take it out of service
        for _ in range(3):
            runtime.predict(CANDIDATES)
        assert runtime.active_version == "1.0.0"  # sustained failures demote it to last-known-good
        assert runtime.predict(CANDIDATES).reason == "ok"
        assert any(e.outcome == "demoted" and e.reason in ("timeout", "worker_lost") for e in hooks.updates)
    finally:
        runtime.close()


def test_a_hanging_load_is_abandoned_and_the_kill_switch_still_gets_through(tmp_path: Path) -> None:
    runtime, updater, hooks = runtime_with(tmp_path)
    try:
        updater.publish(make_archive(version="1.0.0"), "1.0.0")
        runtime.refresh()
        updater.publish(
            make_archive(version="2.0.0", feature_source=hostile_source(at_import="while True:\n    pass")), "2.0.0"
        )
        updater.release_id += 1
        done: list = []
        refresher = threading.Thread(target=lambda: done.append(runtime.refresh()))
        refresher.start()
        while refresher.is_alive():  # the host keeps deciding while the update thread loads
            assert runtime.predict(CANDIDATES).package_version == "1.0.0"
            time.sleep(0.05)
        assert (done[0].outcome, done[0].reason) == ("rejected", "load_timeout")
        updater.kill_switch, updater.release_id = True, updater.release_id + 1
        assert runtime.refresh().outcome == "default_policy"
        assert runtime.predict(CANDIDATES).reason == "kill_switch"
        updater.kill_switch, updater.release_id = False, updater.release_id + 1
        updater.publish(make_archive(version="2.0.1"), "2.0.1")
        assert runtime.refresh().outcome == "installed"
        assert runtime.predict(CANDIDATES).package_version == "2.0.1"
    finally:
        runtime.close()


@pytest.mark.parametrize("isolation", ["process", "thread", "inline"])
def test_exits_raised_by_package_code_never_leave_the_runtime(tmp_path: Path, isolation: str) -> None:
    runtime, updater, _ = runtime_with(tmp_path, isolation)
    try:
        for view in sample_views("me", 3):
            runtime.record(view)
        source = hostile_source(in_transform="raise SystemExit(2)", in_update="raise KeyboardInterrupt")
        updater.publish(make_archive(version="1.0.0", feature_source=source), "1.0.0")
        event = runtime.refresh()  # the replay of the recorded views raises KeyboardInterrupt
        assert (event.outcome, event.reason) == ("rejected", "feature_code")
        updater.publish(
            make_archive(version="1.0.1", feature_source=hostile_source(in_transform="raise SystemExit(2)")), "1.0.1"
        )
        assert runtime.refresh().outcome == "installed"
        runtime.record(sample_views("me", 4)[-1])
        decision = runtime.predict(CANDIDATES)
        assert (decision.reason, decision.watch_s) == ("inference_error", None)
    finally:
        runtime.close()


def test_negative_predictions_are_clamped_to_zero(tmp_path: Path) -> None:
    runtime, updater, _ = runtime_with(tmp_path, "inline")
    negative = hostile_source(in_transform="out[:] = 0.0\nout[:, 0] = -1e6\nreturn")
    updater.publish(make_archive(version="1.0.0", feature_source=negative), "1.0.0")
    runtime.refresh()
    decision = runtime.predict(CANDIDATES)
    assert decision.reason == "ok" and decision.watch_s is not None
    assert all(x == 0.0 for x in decision.watch_s)


def test_the_scene_sets_its_deadline_up_to_the_runtime_ceiling() -> None:
    limits = Limits(call_timeout_s=0.05, max_call_timeout_s=0.25)
    assert limits.for_policy({"call_timeout_ms": 80}).call_timeout_s == pytest.approx(0.08)
    assert limits.for_policy({"call_timeout_ms": 10_000}).call_timeout_s == 0.25
    for nonsense in (0, -5, float("nan"), float("inf"), "soon", True, None):
        assert limits.for_policy({"call_timeout_ms": nonsense}).call_timeout_s == 0.05
    with pytest.raises(ValueError):
        Limits(call_timeout_s=1.0, max_call_timeout_s=0.5)


def test_recent_views_tell_each_package_what_it_missed() -> None:
    views = RecentViews(3)
    seen = sample_views("u", 5)
    for view in seen[:2]:
        views.append(view)
    assert views.since(None) == (True, tuple(seen[:2]), 2)
    assert views.since(2) == (False, (), 2)
    views.append(seen[2])
    assert views.since(2) == (False, (seen[2],), 3)
    for view in seen[3:]:
        views.append(view)
    assert views.since(1) == (True, tuple(seen[2:]), 5)  # view 2 was dropped: start over from what is kept


def test_the_device_state_machine_refuses_transitions_it_does_not_have() -> None:
    state: DeviceState[str] = DeviceState("no_package")
    with pytest.raises(IllegalTransition):
        state.demote()
    with pytest.raises(IllegalTransition):
        state.open_circuit(10.0)
    state.install("a")
    with pytest.raises(IllegalTransition):
        state.demote()  # nothing to fall back on
    with pytest.raises(IllegalTransition):
        state.close_circuit()
    state.install("b")
    assert (state.active, state.last_good, state.mode) == ("b", "a", Mode.ACTIVE)
    state.open_circuit(5.0)
    state.half_open()
    state.close_circuit()
    assert state.demote() == "b" and state.active == "a" and state.last_good is None
    state.to_default("kill_switch")
    assert (state.mode, state.active, state.last_good) == (Mode.DEFAULT, None, "a")
    with pytest.raises(IllegalTransition):
        state.half_open()


def test_more_candidates_than_a_call_carries_is_the_callers_fault(tmp_path: Path) -> None:
    runtime, updater, _ = runtime_with(tmp_path)
    try:
        updater.publish(make_archive(version="1.0.0"), "1.0.0")
        runtime.refresh()
        flood = [Candidate(f"v{i}", 10.0, 1_000_000) for i in range(5000)]
        for _ in range(5):  # never held against the package
            assert runtime.predict(flood).reason == "invalid_input"
        assert runtime.predict(CANDIDATES).reason == "ok"
        assert runtime.mode is Mode.ACTIVE
    finally:
        runtime.close()


def test_a_sustained_failure_rate_takes_a_package_out_of_service_a_single_failure_does_not(tmp_path: Path) -> None:
    runtime, updater, hooks = runtime_with(tmp_path, "inline", breaker_window=6)  # 3 failures in 6 calls
    updater.publish(make_archive(version="1.0.0"), "1.0.0")
    runtime.refresh()
    flaky = hostile_source(in_transform="if _calls['transform'] % 2:\n    raise RuntimeError('every other call')")
    updater.publish(make_archive(version="1.1.0", feature_source=flaky), "1.1.0")
    updater.release_id += 1
    assert runtime.refresh().outcome == "installed"
    reasons = [runtime.predict(CANDIDATES).reason for _ in range(2)]
    assert "inference_error" in reasons and runtime.active_version == "1.1.0"  # one failure: still in service
    for _ in range(4):  # never two failures in a row, but half of all calls
        runtime.predict(CANDIDATES)
    assert runtime.active_version == "1.0.0"
    assert [e.outcome for e in hooks.updates][-1] == "demoted"


def test_an_unknown_isolation_mode_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="isolation"):
        make_runtime(tmp_path, isolation="sandbox")


def test_a_worker_that_cannot_start_is_not_held_against_the_package(tmp_path: Path) -> None:
    runtime, updater, _ = runtime_with(tmp_path)
    try:
        updater.publish(make_archive(version="1.0.0"), "1.0.0")
        patient = runtime.config
        runtime.config = dataclasses.replace(patient, limits=dataclasses.replace(GENEROUS, start_timeout_s=0.001))
        event = runtime.refresh()  # the worker cannot say it is ready in 1 ms: the environment's fault
        assert (event.outcome, event.reason) == ("failed", "sandbox_unavailable")
        runtime.config = patient
        assert runtime.refresh().outcome == "installed"  # 1.0.0 was not marked bad
        assert runtime.predict(CANDIDATES).reason == "ok"
    finally:
        runtime.close()


@pytest.mark.parametrize("knob", [{"smoothing": 10**9}, {"startup_s": 10**400}, {"max_bytes": "all"}])
def test_nonsense_policy_knobs_mark_the_version_bad(tmp_path: Path, knob: dict) -> None:
    runtime, updater, _ = runtime_with(tmp_path, "inline")
    archive = make_archive(version="1.0.0", policy=knob)
    updater.publish(archive, "1.0.0")
    event = runtime.refresh()
    assert (event.outcome, event.reason) == ("rejected", "package_format")
    assert runtime.refresh().outcome == "rejected"  # remembered, not retried
