"""``POST /api/v1/telemetry``: validation, per-minute SQL aggregates, UV, /metrics, MLflow runs."""

from __future__ import annotations

from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pitahaya.registry import Settings, create_app
from pitahaya.registry.services.telemetry import minute_summary

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


@pytest.fixture
def device_auth(client: TestClient, auth: dict[str, str]) -> dict[str, str]:
    secret = client.post("/api/v1/tokens", json={"name": "fleet", "role": "client"}, headers=auth).json()["secret"]
    return {"Authorization": f"Bearer {secret}"}


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


def test_aggregates_are_forwarded_to_one_mlflow_run_per_package_version(
    settings: Settings, tmp_path: Path, token: str
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    forwarding = settings.model_copy(update={"mlflow_tracking_uri": uri, "data_dir": tmp_path / "fwd"})
    app = create_app(forwarding)
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        secret = client.post("/api/v1/tokens", json={"name": "fleet", "role": "client"}, headers=auth).json()["secret"]
        device = {"Authorization": f"Bearer {secret}"}
        later = _window(minute="2026-03-01T12:35:00Z", inferences=4, successes=4, fallbacks={})
        for name in ("a", "b"):
            assert (
                client.post("/api/v1/telemetry", json=_report(name, _window(), later), headers=device).status_code
                == 202
            )
        assert app.state.registry.forwarder.flush(app.state.registry.sessions) == 2

    mlflow = MlflowClient(tracking_uri=uri)
    experiment = mlflow.get_experiment_by_name("watch_time-monitoring")
    runs = mlflow.search_runs([experiment.experiment_id])
    assert [(r.info.run_name, r.data.tags["pitahaya.package_version"]) for r in runs] == [("watch_time-1.0.0", "1.0.0")]
    history = mlflow.get_metric_history(runs[0].info.run_id, "inferences")
    assert [(m.timestamp, m.value) for m in sorted(history, key=lambda m: m.timestamp)] == [
        (int(MINUTE_DT.timestamp() * 1000), 20.0),
        (int(MINUTE_DT.timestamp() * 1000) + 60_000, 8.0),
    ]
    uv = mlflow.get_metric_history(runs[0].info.run_id, "uv")
    assert {m.value for m in uv} == {2.0}
    mae = mlflow.get_metric_history(runs[0].info.run_id, "mae_s")
    assert [m.value for m in mae if m.timestamp == int(MINUTE_DT.timestamp() * 1000)] == [1.5]


def test_device_ids_are_not_stored_in_clear(app: Any, client: TestClient, device_auth: dict[str, str]) -> None:
    from sqlalchemy import select

    from pitahaya.registry.models import TelemetryDevice

    client.post("/api/v1/telemetry", json=_report("alice-phone", _window()), headers=device_auth)

    with app.state.registry.sessions() as session:
        stored = list(session.scalars(select(TelemetryDevice.device_id)))
    assert len(stored) == 1 and "alice" not in stored[0]
