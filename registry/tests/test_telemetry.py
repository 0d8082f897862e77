"""``POST /api/v1/telemetry``: validation, per-minute SQL aggregates, UV, /metrics, MLflow runs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pitahaya.client_runtime import LATENCY_US_BOUNDS, Candidate, Runtime, TelemetryConfig
from pitahaya.registry import Settings
from pitahaya.registry.models import TelemetryCounter
from pitahaya.registry.services.telemetry import minute_summary
from pitahaya.registry.telemetry_export import latency_quantile_us

MINUTE = "2026-03-01T12:34:00Z"
MINUTE_DT = datetime(2026, 3, 1, 12, 34, tzinfo=UTC)


def _window(**fields: Any) -> dict[str, Any]:
    window: dict[str, Any] = {
        "minute": MINUTE,
        "package_version": "1.0.0",
        "inferences": 10,
        "successes": 9,
        "fallbacks": {"model_error": 1},
        "errors": {"predict": 1},
        "latency_us_bounds": [25, 50, 100, 200, 500, 1000, 2000, 5000, 10000],
        "latency_us_counts": [0, 0, 2, 6, 1, 0, 0, 0, 0, 1],
        "views": 12,
        "outcomes": 4,
        "abs_error_sum_s": 6.0,
    }
    return {**window, **fields}


def _report(device: str, *windows: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": device, "scene": "watch_time", "sent_at": "2026-03-01T12:35:02Z", "windows": list(windows),
            "dropped_events": 0}  # fmt: skip


def test_reports_aggregate_per_scene_version_and_minute(
    app: Any, client: TestClient, device_auth: dict[str, str]
) -> None:
    for device in ("a", "b", "a"):
        response = client.post("/api/v1/telemetry", json=_report(device, _window()), headers=device_auth)
        assert response.status_code == 202, response.text
    other = _window(package_version=None, inferences=3, successes=0, fallbacks={"no_release": 3})
    assert client.post("/api/v1/telemetry", json=_report("c", other), headers=device_auth).status_code == 202

    with app.state.registry.sessions() as session:
        v1 = minute_summary(session=session, key=("watch_time", "1.0.0", MINUTE_DT))
        default = minute_summary(session=session, key=("watch_time", "", MINUTE_DT))
    assert v1.value("inferences") == 30 and v1.value("successes") == 27 and v1.value("views") == 36
    assert v1.value("fallbacks", "model_error") == 3 and v1.value("errors", "predict") == 3
    assert v1.value("latency_us", "200") == 18 and v1.value("latency_us", "+Inf") == 3
    assert v1.value("abs_error_sum_s") == 18.0 and v1.value("reports") == 3
    assert v1.unique_devices == 2  # device a reported twice
    assert default.value("fallbacks", "no_release") == 3 and default.unique_devices == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"minute": "2026-03-01T12:34:00"}, "timezone"),
        ({"latency_us_counts": [1, 2]}, "latency_us_counts"),
        ({"latency_us_bounds": [1, 2, 3]}, "latency_us_bounds"),
        ({"successes": 11}, "successes cannot exceed"),
        ({"inferences": -1}, "greater than or equal"),
        ({"package_version": "latest"}, "package_version"),
    ],
)
def test_invalid_reports_are_422_with_a_readable_message(
    client: TestClient, device_auth: dict[str, str], change: dict[str, Any], message: str
) -> None:
    response = client.post("/api/v1/telemetry", json=_report("a", _window(**change)), headers=device_auth)

    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_a_window_stamped_inside_its_minute_counts_for_that_minute_and_booleans_are_not_counts(
    app: Any, client: TestClient, device_auth: dict[str, str]
) -> None:
    inside = _report("a", _window(minute="2026-03-01T13:34:30.5+01:00"))
    assert client.post("/api/v1/telemetry", json=inside, headers=device_auth).status_code == 202
    with app.state.registry.sessions() as session:
        assert minute_summary(session=session, key=("watch_time", "1.0.0", MINUTE_DT)).value("reports") == 1
    for boolean in ({"inferences": True}, {"abs_error_sum_s": False}):
        refused = client.post("/api/v1/telemetry", json=_report("a", _window(**boolean)), headers=device_auth)
        assert refused.status_code == 422 and "not true/false" in str(refused.json()["detail"])


def test_telemetry_needs_a_client_token(client: TestClient, auth: dict[str, str]) -> None:
    publisher = client.post("/api/v1/tokens", json={"name": "ci", "role": "publisher"}, headers=auth).json()["secret"]

    assert client.post("/api/v1/telemetry", json=_report("a", _window())).status_code == 401
    refused = client.post(
        "/api/v1/telemetry", json=_report("a", _window()), headers={"Authorization": f"Bearer {publisher}"}
    )
    assert refused.status_code == 403


def test_metrics_expose_fleet_totals_and_request_metrics(client: TestClient, device_auth: dict[str, str]) -> None:
    client.post("/api/v1/telemetry", json=_report("a", _window()), headers=device_auth)
    client.get("/tuf/metadata/timestamp.json")

    text = client.get("/metrics").text

    assert 'pitahaya_device_inferences_total{package_version="1.0.0",scene="watch_time"} 10.0' in text
    assert (
        'pitahaya_device_fallbacks_total{package_version="1.0.0",reason="model_error",scene="watch_time"} 1.0' in text
    )
    assert (
        'pitahaya_device_inference_latency_us_bucket{le="200",package_version="1.0.0",scene="watch_time"} 8.0' in text
    )
    assert 'route="/tuf/metadata/{name}",status="200"' in text
    assert 'pitahaya_registry_requests_total{method="POST",route="/api/v1/telemetry",status="202"} 1.0' in text


#: The app, its client, the push's answer and client-token headers of a registry that forwards to MLflow.
Forwarding = tuple[FastAPI, TestClient, dict[str, Any], dict[str, str]]
StartForwarding = Callable[[str, bytes], AbstractContextManager[Forwarding]]


@pytest.fixture
def forwarding_registry(
    settings: Settings,
    auth: dict[str, str],
    client_auth: Callable[[TestClient], dict[str, str]],
    start_registry: Callable[[Settings], FastAPI],
) -> StartForwarding:
    """Starts a registry forwarding to the MLflow store at a URI, with an archive pushed."""

    @contextmanager
    def start(tracking_uri: str, archive: bytes) -> Iterator[Forwarding]:
        app = start_registry(
            settings.model_copy(update={"mlflow_tracking_uri": tracking_uri, "mlflow_forwarding": True})
        )
        with TestClient(app) as client:
            pushed = client.post("/api/v1/packages", content=archive, headers=auth)
            assert pushed.status_code == 201, pushed.text
            yield app, client, pushed.json(), client_auth(client)

    return start


def test_aggregates_are_forwarded_to_one_mlflow_run_per_package_version_linked_to_its_training(
    tmp_path: Path, auth: dict[str, str], make_archive: Callable[..., bytes], forwarding_registry: StartForwarding
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri, registry_uri=uri)
    training = mlflow.create_run(mlflow.create_experiment("watch_time-training")).info
    archive = make_archive(mlflow={"run_id": training.run_id, "experiment_id": training.experiment_id})
    sha256 = hashlib.sha256(archive).hexdigest()
    mlflow.create_registered_model("watch_time")  # what the packager registers, tagged with the package
    model_version = mlflow.create_model_version(
        "watch_time",
        f"runs:/{training.run_id}/model",
        run_id=training.run_id,
        tags={"package.sha256": sha256, "package.version": "1.0.0"},
    ).version

    with forwarding_registry(uri, archive) as (app, client, pushed, device):
        published = pushed["created_at"]
        first = _window(
            minute=_minute_after(published, 3),
            fallbacks={"timeout": 1},
            latency_us_bounds=list(LATENCY_US_BOUNDS),
            latency_us_counts=[10 if b == 52 else 0 for b in LATENCY_US_BOUNDS] + [0],
            abs_error_sq_sum_s2=13.0,
        )
        later = _window(minute=_minute_after(published, 4), inferences=4, successes=4, fallbacks={})
        for name in ("a", "b"):
            response = client.post("/api/v1/telemetry", json=_report(name, first, later), headers=device)
            assert response.status_code == 202
        forwarder = app.state.registry.forwarder
        assert forwarder.flush(app.state.registry.sessions) == 2
        released = client.post("/api/v1/scenes/watch_time/releases", json={"version": "1.0.0"}, headers=auth)
        assert released.status_code == 201, released.text
    # the app's shutdown flushed the release the route announced

    experiment = mlflow.get_experiment_by_name("watch_time-monitoring")
    (run,) = mlflow.search_runs([experiment.experiment_id])
    assert run.info.run_name == "watch_time-1.0.0"
    start = datetime.fromisoformat(published).replace(second=0, microsecond=0)
    assert run.info.start_time == int(start.timestamp() * 1000)  # the package's publish time
    tags = run.data.tags
    assert tags["pitahaya.package_version"] == "1.0.0" and tags["pitahaya.package_sha256"] == sha256
    assert tags["pitahaya.training_run_id"] == training.run_id
    assert (tags["pitahaya.model_name"], tags["pitahaya.model_version"]) == ("watch_time", str(model_version))
    assert (tags["pitahaya.release_id"], tags["pitahaya.release_channel"]) == (
        str(released.json()["release_id"]),
        "stable",
    )
    assert (tags["pitahaya.rollout_percent"], tags["pitahaya.fully_rolled_out"]) == ("100", "true")
    assert str(mlflow.get_model_version_by_alias("watch_time", "champion").version) == str(model_version)

    def history(name: str) -> list[tuple[int, int, float]]:
        points = mlflow.get_metric_history(run.info.run_id, name)
        return sorted((m.step, m.timestamp, m.value) for m in points)

    minute_ms = int(start.timestamp() * 1000) + 3 * 60_000
    # wall-clock timestamps, steps in minutes since the run's start
    assert history("inferences") == [(3, minute_ms, 20.0), (4, minute_ms + 60_000, 8.0)]
    assert {value for _, _, value in history("uv")} == {2.0}
    assert history("mae_s")[0][2] == 1.5
    assert history("abs_error_std_s")[0][2] == pytest.approx(math.sqrt(26.0 / 8 - 1.5**2))
    assert history("timeout_rate")[0][2] == history("fallback_rate.timeout")[0][2] == 0.1
    assert history("success_rate")[0][2] == 0.9 and history("fallback_rate")[0][2] == 0.1
    assert history("latency_us_p50")[0][2] == pytest.approx(47.5)  # within (43, 52], not 52
    assert [value for _, _, value in history("rollout_percent")] == [100.0]


def _minute_after(iso: str, minutes: int) -> str:
    moment = datetime.fromisoformat(iso).replace(second=0, microsecond=0) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")


def test_forwarding_is_on_by_default_to_the_projects_store_and_can_be_turned_off(
    tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = Settings(data_dir=tmp_path / "data", registry_token=token)
    assert default.resolved_mlflow_tracking_uri == f"sqlite:///{(tmp_path / 'data').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default.resolved_mlflow_tracking_uri == "http://mlflow.example:5000"
    explicit = Settings(data_dir=tmp_path, registry_token=token, mlflow_tracking_uri="sqlite:///elsewhere.db")
    assert explicit.resolved_mlflow_tracking_uri == "sqlite:///elsewhere.db"
    monkeypatch.setenv("PITAHAYA_MLFLOW_FORWARDING", "false")
    assert Settings(data_dir=tmp_path, registry_token=token).resolved_mlflow_tracking_uri is None


def test_a_broken_mlflow_never_breaks_ingestion_and_what_failed_is_retried(
    tmp_path: Path, auth: dict[str, str], make_archive: Callable[..., bytes], forwarding_registry: StartForwarding
) -> None:
    # A store MLflow cannot open (its folder is a file) stands for MLflow being down.
    (tmp_path / "not-a-folder").write_text("")
    broken = f"sqlite:///{tmp_path / 'not-a-folder' / 'mlflow.db'}"
    with forwarding_registry(broken, make_archive()) as (app, client, _, device):
        assert client.post("/api/v1/telemetry", json=_report("a", _window()), headers=device).status_code == 202
        release = {"version": "1.0.0", "rollout_percent": 10}
        # Releasing does not wait for MLflow either: the route only queues the announcement.
        assert client.post("/api/v1/scenes/watch_time/releases", json=release, headers=auth).status_code == 201
        forwarder = app.state.registry.forwarder
        assert forwarder.flush(app.state.registry.sessions) == 0  # never raises
        assert len(forwarder._pending) == 1 and len(forwarder._releases) == 1  # kept for the next round
        assert client.post("/api/v1/telemetry", json=_report("b", _window()), headers=device).status_code == 202
    with app.state.registry.sessions() as session:
        assert minute_summary(session=session, key=("watch_time", "1.0.0", MINUTE_DT)).value("inferences") == 20


def test_device_ids_are_not_stored_in_clear(app: Any, client: TestClient, device_auth: dict[str, str]) -> None:
    from sqlalchemy import select

    from pitahaya.registry.models import TelemetryDevice

    client.post("/api/v1/telemetry", json=_report("alice-phone", _window()), headers=device_auth)

    with app.state.registry.sessions() as session:
        stored = list(session.scalars(select(TelemetryDevice.device_id)))
    assert len(stored) == 1 and "alice" not in stored[0]


def test_reports_in_the_fine_and_in_the_old_layout_are_both_accepted(
    app: Any, client: TestClient, device_auth: dict[str, str]
) -> None:
    fine = _window(
        latency_us_bounds=list(LATENCY_US_BOUNDS),
        latency_us_counts=[0] * 9 + [7, 0, 0] + [0] * (len(LATENCY_US_BOUNDS) - 12) + [1],
        abs_error_sq_sum_s2=20.0,
    )
    old = _window()  # 9 bounds, no squared errors: a device in the field
    for window in (fine, old):
        assert client.post("/api/v1/telemetry", json=_report("a", window), headers=device_auth).status_code == 202
    mismatched = _window(latency_us_counts=[1] * (len(LATENCY_US_BOUNDS) + 1))  # old bounds, fine counts
    refused = client.post("/api/v1/telemetry", json=_report("a", mismatched), headers=device_auth)
    assert refused.status_code == 422 and "latency_us_counts needs 10" in str(refused.json()["detail"])

    with app.state.registry.sessions() as session:
        summary = minute_summary(session=session, key=("watch_time", "1.0.0", MINUTE_DT))
    assert summary.counters["latency_us"] == {"52": 7.0, "100": 2.0, "200": 6.0, "500": 1.0, "+Inf": 2.0}
    assert summary.value("abs_error_sq_sum_s2") == 20.0 and summary.value("abs_error_sum_s") == 12.0


def test_latency_quantiles_are_interpolated_within_their_bucket() -> None:
    fine = {"52": 10.0}  # all in (43, 52]
    assert latency_quantile_us(fine, 0.5) == pytest.approx(47.5)
    assert latency_quantile_us(fine, 0.99) == pytest.approx(43 + 0.99 * 9)
    spread = {"10": 50.0, "1157": 49.0, "+Inf": 1.0}  # (0, 10], (964, 1157], overflow
    assert latency_quantile_us(spread, 0.5) == pytest.approx(10.0)
    assert latency_quantile_us(spread, 0.75) == pytest.approx(964 + (75 - 50) / 49 * (1157 - 964))
    assert latency_quantile_us(spread, 0.999) == 1_000_000  # in the overflow bucket: its lower edge
    old = {"100": 4.0, "200": 4.0}  # legacy layout: (50, 100], (100, 200]
    assert latency_quantile_us(old, 0.25) == pytest.approx(75.0)
    assert latency_quantile_us(old, 0.75) == pytest.approx(150.0)
    assert latency_quantile_us({}, 0.5) is None


def test_a_runtime_reports_to_a_real_registry_by_default(
    app: Any, live_url: str, auth: dict[str, str], tmp_path: Path
) -> None:
    secret = httpx.post(f"{live_url}/api/v1/tokens", json={"name": "app", "role": "client"}, headers=auth).json()[
        "secret"
    ]
    root = httpx.get(f"{live_url}/tuf/metadata/root.json").content
    runtime = Runtime(
        live_url,
        "watch_time",
        "phone-1",
        cache_dir=tmp_path / "device",
        trusted_root=root,
        telemetry=TelemetryConfig(token=secret),
        isolation="inline",
    )
    with runtime:  # start(): update checks and the reporter's thread; close(): the last batch
        decisions = [runtime.predict([Candidate("v1", 20.0, 1_000_000)]) for _ in range(5)]
    assert {d.reason for d in decisions} == {"no_package"}  # nothing released: the default policy answers
    assert runtime.telemetry is not None and runtime.telemetry.sent_batches >= 1

    with app.state.registry.sessions() as session:
        inferences = session.scalar(
            select(func.sum(TelemetryCounter.value)).where(TelemetryCounter.metric == "inferences")
        )
    assert inferences == 5


def test_a_batch_resent_after_a_lost_answer_is_counted_once(
    app: Any, client: TestClient, device_auth: dict[str, str]
) -> None:
    batch = {**_report("a", _window()), "batch_id": "b" * 32}
    for _ in range(3):  # the answer was lost twice: the device sends the same batch again
        assert client.post("/api/v1/telemetry", json=batch, headers=device_auth).status_code == 202
    other = {**_report("a", _window()), "batch_id": "c" * 32}
    assert client.post("/api/v1/telemetry", json=other, headers=device_auth).status_code == 202
    same_id_other_device = {**_report("b", _window()), "batch_id": "b" * 32}
    assert client.post("/api/v1/telemetry", json=same_id_other_device, headers=device_auth).status_code == 202

    with app.state.registry.sessions() as session:
        summary = minute_summary(session=session, key=("watch_time", "1.0.0", MINUTE_DT))
    assert summary.value("inferences") == 30 and summary.value("reports") == 3
