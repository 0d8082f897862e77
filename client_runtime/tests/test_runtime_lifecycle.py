"""Update thread (schedule, backoff, close), anti-rollback of release documents, expired metadata,
the half-open circuit breaker and concurrent use. Time is driven through the seams (`wait`,
`clock`, `rng`); nothing here sleeps to make a point."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from pitahaya.client_runtime import Candidate, MetadataExpiredError, RuntimeConfig

from package_factory import failing_on_long_candidates, make_archive, sample_views
from runtime_support import CANDIDATES, PATIENT, FakeClock, LocalUpdater, Recorder, make_runtime

NO_JITTER = RuntimeConfig(limits=PATIENT.limits, refresh_interval_s=600.0, refresh_jitter=0.0, backoff_base_s=10.0, backoff_max_s=50.0)


class ScriptedWait:
    """The update thread's wait seam: records each delay, lets ``on_wait`` change the world,
    and tells the thread to stop after ``stop_after`` waits."""

    def __init__(self, stop_after: int, on_wait=None) -> None:  # type: ignore[no-untyped-def]
        self.delays: list[float] = []
        self.stop_after = stop_after
        self.on_wait = on_wait
        self.done = threading.Event()

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        if self.on_wait is not None:
            self.on_wait(len(self.delays))
        if len(self.delays) >= self.stop_after:
            self.done.set()
            return True
        return False


def test_start_refreshes_then_backs_off_exponentially_and_recovers(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.offline = True

    def world(waits: int) -> None:  # the registry comes back after the 5th failed check
        if waits == 5:
            updater.publish(make_archive(), "1.0.0")
            updater.offline = False

    wait = ScriptedWait(stop_after=7, on_wait=world)
    rt = make_runtime(tmp_path, updater, hooks, config=NO_JITTER, wait=wait)
    with rt:
        assert wait.done.wait(30)
    # 10, 20, 40, then capped at 50; after the successful check, back to the interval.
    assert wait.delays == [10.0, 20.0, 40.0, 50.0, 50.0, 600.0, 600.0]
    assert [u.outcome for u in hooks.updates] == ["failed"] * 5 + ["installed", "unchanged"]
    assert rt.active_version == "1.0.0"
    rt.close()  # idempotent


def test_refresh_delays_carry_bounded_jitter() -> None:
    config = RuntimeConfig(limits=PATIENT.limits, refresh_interval_s=100.0, refresh_jitter=0.2, backoff_base_s=10.0)
    rng = random.Random(7)
    steady = [config.refresh_delay(0, rng) for _ in range(200)]
    assert all(80.0 <= d <= 120.0 for d in steady) and len(set(steady)) > 100
    assert all(8.0 <= config.refresh_delay(1, rng) <= 12.0 for _ in range(50))


def test_close_stops_the_update_thread_promptly(tmp_path: Path) -> None:
    updater = LocalUpdater(tmp_path)
    rt = make_runtime(tmp_path, updater, config=RuntimeConfig(limits=PATIENT.limits, refresh_interval_s=3600.0))
    rt.start()
    rt.close(timeout_s=10.0)  # the default wait is an event that close() sets
    assert rt._refresher.thread is None and updater.checks >= 1


def test_an_older_release_document_is_refused(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    updater.release_id = 5
    rt = make_runtime(tmp_path, updater, hooks)
    assert rt.refresh().outcome == "installed"
    # A registry (or mirror) replays release 4, which named another version: refused.
    updater.publish(make_archive(version="0.9.0"), "0.9.0")
    updater.release_id = 4
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("rejected", "release_rollback")
    assert rt.predict(CANDIDATES).package_version == "1.0.0"
    # The floor survives a restart.
    restarted = make_runtime(tmp_path, updater)
    assert restarted.refresh().reason == "release_rollback"
    # Rolling back is a *new* signed release pointing at the older package.
    updater.release_id = 6
    assert restarted.refresh().outcome == "installed"
    assert restarted.predict(CANDIDATES).package_version == "0.9.0"


def test_expired_metadata_stops_installs_but_never_inference(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, hooks)
    assert rt.refresh().outcome == "installed"
    updater.publish(make_archive(version="1.1.0"), "1.1.0")
    updater.error = MetadataExpiredError("timestamp expired")
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("failed", "metadata_expired")
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", "1.0.0")


def test_breaker_opens_then_half_opens_and_closes_or_reopens(tmp_path: Path) -> None:
    updater, hooks, clock = LocalUpdater(tmp_path), Recorder(), FakeClock()
    updater.publish(failing_on_long_candidates("1.0.0"), "1.0.0")
    config = RuntimeConfig(limits=PATIENT.limits, breaker_failures=3, breaker_reset_s=60.0)
    rt = make_runtime(tmp_path, updater, hooks, config=config, clock=clock)
    assert rt.refresh().outcome == "installed"  # no last-known-good: the breaker is the only guard
    poison, fine = [Candidate("long", 5000.0, 9_000_000)], CANDIDATES
    assert [rt.predict(poison).reason for _ in range(3)] == ["inference_error"] * 3
    # Open: the model is not even tried, good candidates included.
    assert rt.predict(fine).reason == "circuit_open"
    clock.now += 59.0
    assert rt.predict(fine).reason == "circuit_open"
    # Half-open after breaker_reset_s: one trial; it fails, so the breaker re-opens at once.
    clock.now += 1.0
    assert rt.predict(poison).reason == "inference_error"
    assert rt.predict(fine).reason == "circuit_open"
    # Next trial succeeds: closed again, the package answers.
    clock.now += 60.0
    assert rt.predict(fine).reason == "ok"
    assert rt.predict(fine).reason == "ok"
    # Closed means counting from zero again: one failure does not open it.
    assert rt.predict(poison).reason == "inference_error"
    assert rt.predict(fine).reason == "ok"
    assert hooks.fallbacks == ["inference_error"] * 3 + ["circuit_open"] * 2 + ["inference_error", "circuit_open"] + [
        "inference_error"
    ]


def test_concurrent_predict_record_observe_and_refresh(tmp_path: Path) -> None:
    updater, hooks = LocalUpdater(tmp_path), Recorder()
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, hooks)
    rt.refresh()
    views = sample_views(n=60)
    errors: list[BaseException] = []
    decisions: list[int] = []
    barrier = threading.Barrier(9)

    def predictor(seed: int) -> None:
        barrier.wait()
        try:
            for i in range(150):
                n = 1 + (seed + i) % 8
                cands = [Candidate(f"v{seed}-{i}-{k}", 10.0 + k, 1_000_000 + k) for k in range(n)]
                d = rt.predict(cands, now=1_700_000_500.0)
                assert d.reason == "ok" and d.watch_s is not None and len(d.watch_s) == n
                rt.observe(d.prediction_id, 3.0)
                decisions.append(d.prediction_id)
        except BaseException as e:
            errors.append(e)

    def recorder() -> None:
        barrier.wait()
        for view in views:
            rt.record(view)

    def refresher() -> None:
        barrier.wait()
        for i in range(5):
            updater.publish(make_archive(version=f"1.0.{i + 1}"), f"1.0.{i + 1}")
            rt.refresh()

    threads = [threading.Thread(target=predictor, args=(s,)) for s in range(6)]
    threads += [
        threading.Thread(target=recorder),
        threading.Thread(target=recorder),
        threading.Thread(target=refresher),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(decisions) == 900 and len(set(decisions)) == 900  # unique prediction ids
    assert len(hooks.outcomes) == 900 and not hooks.errors
    assert rt.active_version == "1.0.5"
