"""The client runtime against real registry processes on 127.0.0.1: background updates,
telemetry into the registry's own endpoint, and a registry whose keys the device does not trust."""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from pitahaya.cli._server import registry_process
from pitahaya.client_runtime import Hooks, Runtime, TelemetryReporter, UpdateEvent
from pitahaya.simulation import generated_sessions

from e2e_support import PATIENT_DEVICE, LiveRegistry, Pipeline

pytestmark = pytest.mark.e2e


def _publish(registry: LiveRegistry, pipeline: Pipeline) -> bytes:
    client = registry.client()
    client.push(pipeline.built.path.read_bytes())
    client.create_release("watch_time", "1.0.0")
    return client.root_metadata()


class InstallWatcher(TelemetryReporter):
    """The built-in reporter, plus an event the test can wait on (not a sleep)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.installed = threading.Event()

    def on_update(self, event: UpdateEvent) -> None:
        super().on_update(event)
        if event.outcome == "installed":
            self.installed.set()


def test_started_runtime_installs_in_background_and_reports_to_the_registry(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    root = _publish(live_registry, pipeline)
    token = live_registry.client().create_token("fleet-e2e", "client")["secret"]
    reporter = InstallWatcher(live_registry.url, token, scene="watch_time", device_id="device-e2e")
    runtime = Runtime(
        live_registry.url,
        "watch_time",
        "device-e2e",
        cache_dir=tmp_path / "device",
        trusted_root=root,
        hooks=reporter,
        config=replace(PATIENT_DEVICE, refresh_interval_s=3600.0),
        platform="android",
        app_version="5.2.0",
    )
    sitting = generated_sessions(pipeline.views, test_from=pipeline.trained.test_from, max_users=1, seed=1)[0]
    stream = [*sitting.history[-20:], *sitting.views]
    with runtime:
        assert reporter.installed.wait(60), "the update thread did not install the release"
        decisions = 0
        for previous, view in itertools.pairwise(stream):
            runtime.record(previous)
            decision = runtime.predict([view.as_candidate()], now=view.start_ts)
            assert (decision.reason, decision.package_version) == ("ok", "1.0.0")
            runtime.observe(decision.prediction_id, view.watch_s)
            decisions += 1
    assert decisions > 0
    assert reporter.flush()  # 202 from the registry (pending windows, if any, sent now)
    assert reporter.failed_batches == 0 and reporter.sent_batches >= 1
    metrics = httpx.get(f"{live_registry.url}/metrics", timeout=10).text
    found = re.search(r'pitahaya_device_inferences_total\{[^}]*package_version="1\.0\.0"[^}]*\} ([0-9.e+]+)', metrics)
    assert found is not None, metrics[-2000:]
    assert float(found.group(1)) == decisions
    outcomes = re.search(r'pitahaya_device_outcomes_total\{[^}]*package_version="1\.0\.0"[^}]*\} ([0-9.e+]+)', metrics)
    assert outcomes is not None and float(outcomes.group(1)) == decisions


class Recorder(Hooks):
    def __init__(self) -> None:
        self.fallbacks: list[str] = []
        self.updates: list[UpdateEvent] = []

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        self.fallbacks.append(reason)

    def on_update(self, event: UpdateEvent) -> None:
        self.updates.append(event)


def test_a_registry_signed_with_other_keys_is_refused(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    trusted_root = _publish(live_registry, pipeline)
    token = secrets.token_urlsafe(24)
    with registry_process(tmp_path / "impostor-data", token) as impostor_url:
        impostor = LiveRegistry(url=impostor_url, token=token, data_dir=tmp_path / "impostor-data")
        assert _publish(impostor, pipeline) != trusted_root  # same package, its own keys
        hooks = Recorder()
        runtime = Runtime(
            impostor_url,
            "watch_time",
            "device-7",
            cache_dir=tmp_path / "device",
            trusted_root=trusted_root,
            hooks=hooks,
            config=PATIENT_DEVICE,
        )
        event = runtime.refresh()
    assert (event.outcome, event.reason) == ("failed", "verification_failed")
    decision = runtime.predict([pipeline.views[0].as_candidate()])
    assert (decision.reason, decision.package_version, decision.watch_s) == ("verification_failed", None, None)
    assert hooks.fallbacks == ["verification_failed"]
    assert not (tmp_path / "device" / "packages").exists() or not any((tmp_path / "device" / "packages").iterdir())
