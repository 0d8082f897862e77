"""The telemetry reporter against a real HTTP server on 127.0.0.1 that records what it is sent.

The registry's own endpoint is tested on the registry side; here a stdlib server stands in
for it so the reporter's batching, retry and drop rules can be driven (status codes on demand).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pitahaya.client_runtime import (
    LATENCY_US_BOUNDS,
    Candidate,
    CompositeHooks,
    Hooks,
    InferenceEvent,
    Runtime,
    TelemetryConfig,
    TelemetryReporter,
)

from package_factory import failing_on_long_candidates, make_archive, sample_views
from runtime_support import CANDIDATES, PATIENT, LocalUpdater, make_runtime


class Collector:
    """A recording telemetry endpoint; ``statuses`` are answered in order, then 202."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.statuses: list[int] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.auth.append(self.headers.get("Authorization"))
                status = collector.statuses.pop(0) if collector.statuses else 202
                if self.path == "/api/v1/telemetry" and status == 202:
                    collector.posts.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    thread = threading.Thread(target=c.server.serve_forever, daemon=True)
    thread.start()
    yield c
    c.server.shutdown()
    c.server.server_close()


class WallClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:  # 2023-11-14T22:13:20Z
        self.now = now

    def __call__(self) -> float:
        return self.now


def _reporter(collector: Collector, clock: WallClock, **kwargs: Any) -> TelemetryReporter:
    return TelemetryReporter(
        collector.url, "tok-1", scene="watch_time", device_id="device-1", wall_clock=clock, **kwargs
    )


def test_windows_per_minute_and_version_reach_the_registry(tmp_path: Path, collector: Collector) -> None:
    clock = WallClock()
    reporter = _reporter(collector, clock)
    updater = LocalUpdater(tmp_path)
    rt = make_runtime(tmp_path, updater, reporter)
    rt.predict(CANDIDATES)  # no package yet: default policy
    updater.publish(make_archive(), "1.0.0")
    rt.refresh()
    for view in sample_views(n=4):
        rt.record(view)
    first = rt.predict(CANDIDATES)
    second = rt.predict(CANDIDATES[:1])
    assert first.watch_s is not None and second.watch_s is not None
    rt.observe(first.prediction_id, first.watch_s[0] + 2.0)
    clock.now += 60.0  # the next minute
    third = rt.predict(CANDIDATES)
    assert third.watch_s is not None
    rt.observe(third.prediction_id, third.watch_s[0] - 0.5)
    assert reporter.flush()

    (post,) = collector.posts
    assert collector.auth == ["Bearer tok-1"]
    assert (post["device_id"], post["scene"], post["dropped_events"]) == ("device-1", "watch_time", 0)
    windows = {(w["minute"], w["package_version"]): w for w in post["windows"]}
    assert set(windows) == {
        ("2023-11-14T22:13:00Z", None),
        ("2023-11-14T22:13:00Z", "1.0.0"),
        ("2023-11-14T22:14:00Z", "1.0.0"),
    }
    default = windows["2023-11-14T22:13:00Z", None]
    assert (default["inferences"], default["successes"], default["fallbacks"]) == (1, 0, {"no_package": 1})
    model = windows["2023-11-14T22:13:00Z", "1.0.0"]
    assert (model["inferences"], model["successes"], model["fallbacks"], model["views"]) == (2, 2, {}, 4)
    assert (model["outcomes"], model["abs_error_sum_s"]) == (1, pytest.approx(2.0, abs=1e-9))
    assert sum(model["latency_us_counts"]) == 2 and len(model["latency_us_counts"]) == len(LATENCY_US_BOUNDS) + 1
    later = windows["2023-11-14T22:14:00Z", "1.0.0"]
    assert (later["inferences"], later["outcomes"], later["abs_error_sum_s"]) == (1, 1, pytest.approx(0.5, abs=1e-9))
    assert reporter.flush() and len(collector.posts) == 1  # nothing pending: nothing sent


def test_backpressure_drops_and_counts_without_blocking_predict(tmp_path: Path, collector: Collector) -> None:
    reporter = _reporter(collector, WallClock(), max_queue=5)
    rt = make_runtime(tmp_path, hooks=reporter)
    decisions = [rt.predict([Candidate("v", 10.0, 1_000_000)]) for _ in range(20)]
    assert all(d.reason == "no_package" for d in decisions)
    assert reporter.dropped_events == 15
    assert reporter.flush()
    (post,) = collector.posts
    assert post["dropped_events"] == 15
    assert sum(w["inferences"] for w in post["windows"]) == 5
    assert reporter.dropped_events == 0  # reported, so reset


def test_failed_batches_are_resent_unchanged_and_rejected_ones_dropped(tmp_path: Path, collector: Collector) -> None:
    reporter = _reporter(collector, WallClock())
    rt = make_runtime(tmp_path, hooks=reporter)
    rt.predict(CANDIDATES)
    collector.statuses = [503]
    assert not reporter.flush()  # server error: the batch is kept
    rt.predict(CANDIDATES)
    assert reporter.flush()  # the same batch again, byte for byte: the registry counts a batch id once
    assert reporter.flush()  # the later decision, in the next batch
    first, second = collector.posts
    assert [w["inferences"] for w in first["windows"]] == [1] == [w["inferences"] for w in second["windows"]]
    assert first["batch_id"] != second["batch_id"] and len(first["batch_id"]) == 32
    rt.predict(CANDIDATES)
    collector.statuses = [401]
    assert not reporter.flush()  # would never be accepted: dropped and counted
    assert reporter.dropped_events == 1
    assert reporter.flush()
    assert collector.posts[-1]["dropped_events"] == 1 and collector.posts[-1]["windows"] == []


def test_unreachable_registry_never_reaches_the_host(tmp_path: Path) -> None:
    reporter = TelemetryReporter("http://127.0.0.1:9", "t", scene="watch_time", device_id="d", timeout_s=2.0)
    rt = make_runtime(tmp_path, hooks=reporter)
    assert rt.predict(CANDIDATES).reason == "no_package"
    assert not reporter.flush() and reporter.failed_batches == 1


def test_background_thread_sends_and_close_flushes(tmp_path: Path, collector: Collector) -> None:
    reporter = _reporter(collector, WallClock(), flush_interval_s=3600.0)
    rt = make_runtime(tmp_path, hooks=reporter)
    with reporter:
        rt.predict(CANDIDATES)
        rt.predict(CANDIDATES)
    # close() stopped the thread and sent the last batch
    assert [w["inferences"] for post in collector.posts for w in post["windows"]] == [2]


class HostHooks(Hooks):
    """The host app's own hooks, which must keep working beside the built-in reporter."""

    def __init__(self, fail: bool = False) -> None:
        self.inferences: list[InferenceEvent] = []
        self.fail = fail

    def on_inference(self, event: InferenceEvent) -> None:
        self.inferences.append(event)
        if self.fail:
            raise RuntimeError("a broken host hook")


def _runtime(tmp_path: Path, url: str, **kwargs: Any) -> Runtime:
    kwargs.setdefault("config", PATIENT)
    return Runtime(url, "watch_time", "device-1", cache_dir=tmp_path, updater=LocalUpdater(tmp_path), **kwargs)


@pytest.mark.parametrize("fail", [False, True])
def test_a_runtime_with_a_registry_and_a_token_reports_by_default_beside_the_host_hooks(
    tmp_path: Path, collector: Collector, fail: bool
) -> None:
    host = HostHooks(fail=fail)
    rt = _runtime(tmp_path, collector.url, hooks=host, telemetry=TelemetryConfig(token="tok-2"))
    assert isinstance(rt.telemetry, TelemetryReporter) and isinstance(rt.hooks, CompositeHooks)
    with rt:  # start() starts the reporter's thread too; close() sends the last batch
        for _ in range(3):
            assert rt.predict(CANDIDATES).reason == "no_package"
    assert len(host.inferences) == 3  # the host's hooks still see every decision (even when they raise)
    assert collector.auth == ["Bearer tok-2"]
    assert [w["inferences"] for post in collector.posts for w in post["windows"]] == [3]


def test_without_a_token_or_when_opted_out_a_runtime_builds_no_reporter(tmp_path: Path) -> None:
    host = HostHooks()
    assert _runtime(tmp_path / "a", "http://127.0.0.1:9", telemetry=False, hooks=host).hooks is host
    assert _runtime(tmp_path / "b", "http://127.0.0.1:9", telemetry=None).telemetry is None
    assert _runtime(tmp_path / "c", "http://127.0.0.1:9").telemetry is None  # the default has no token
    assert _runtime(tmp_path / "e", "http://127.0.0.1:9", telemetry=True).telemetry is None  # the same
    without_url = Runtime(None, "watch_time", "d", cache_dir=tmp_path / "d", updater=LocalUpdater(tmp_path / "d"))
    assert without_url.telemetry is None  # nowhere to report


def test_a_runtime_never_started_leaves_flushing_to_its_caller(tmp_path: Path, collector: Collector) -> None:
    """A fleet simulator drives many runtimes on one thread: no reporter thread per device."""
    clock = WallClock()
    reporter = _reporter(collector, clock, flush_interval_s=0.001)
    rt = _runtime(tmp_path, collector.url, telemetry=reporter)
    assert rt.telemetry is reporter and rt.hooks is reporter  # no host hooks: nothing composed
    rt.predict(CANDIDATES)
    assert reporter._thread is None and collector.posts == []  # nothing sends on its own
    assert reporter.flush()
    assert [w["inferences"] for w in collector.posts[0]["windows"]] == [1]
    rt.close()  # nothing pending: nothing sent
    assert len(collector.posts) == 1


def test_windows_carry_the_squared_errors_and_the_fine_histogram(tmp_path: Path, collector: Collector) -> None:
    clock = WallClock()
    reporter = _reporter(collector, clock)
    updater = LocalUpdater(tmp_path)
    rt = make_runtime(tmp_path, updater, reporter)
    updater.publish(make_archive(), "1.0.0")
    rt.refresh()
    errors = [2.0, -1.0, 0.5]
    for error in errors:
        decision = rt.predict(CANDIDATES)
        assert decision.watch_s is not None
        rt.observe(decision.prediction_id, decision.watch_s[0] + error)
    assert reporter.flush()

    (window,) = collector.posts[0]["windows"]
    assert window["outcomes"] == 3
    assert window["abs_error_sum_s"] == pytest.approx(3.5, abs=1e-9)
    assert window["abs_error_sq_sum_s2"] == pytest.approx(5.25, abs=1e-9)
    assert window["latency_us_bounds"] == list(LATENCY_US_BOUNDS) and sum(window["latency_us_counts"]) == 3


def test_latency_bounds_are_log_spaced_from_10_us_to_1_s() -> None:
    bounds = LATENCY_US_BOUNDS
    assert len(bounds) <= 64 and bounds[0] == 10 and bounds[-1] == 1_000_000
    ratios = [b / a for a, b in zip(bounds, bounds[1:], strict=False)]
    assert all(1.15 < r <= 1.25 for r in ratios)


def test_fallbacks_are_counted_against_the_package_that_failed(tmp_path: Path, collector: Collector) -> None:
    # A new version that raises leaves its decisions to the last-known-good one; its window
    # must show the failures (the rollout gate compares versions on these windows).
    reporter = _reporter(collector, WallClock())
    updater = LocalUpdater(tmp_path)
    updater.publish(make_archive(), "1.0.0")
    rt = make_runtime(tmp_path, updater, reporter)
    rt.refresh()
    rt.predict(CANDIDATES)
    updater.publish(failing_on_long_candidates("1.0.1"), "1.0.1")
    assert rt.refresh().outcome == "installed"
    for _ in range(3):
        assert rt.predict([Candidate("long", 5000.0, 9_000_000)]).package_version == "1.0.0"
    assert reporter.flush()
    windows = {w["package_version"]: w for w in collector.posts[0]["windows"]}
    assert (windows["1.0.1"]["inferences"], windows["1.0.1"]["successes"]) == (3, 0)
    assert windows["1.0.1"]["fallbacks"] == {"inference_error": 3}
    assert (windows["1.0.0"]["inferences"], windows["1.0.0"]["successes"]) == (1, 1)
