"""``/metrics``: the UV gauge ``pitahaya_device_uv`` (distinct devices over the last complete minutes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pitahaya.registry.observability import TelemetryCollector

NOW = datetime(2026, 3, 1, 13, 0, 30, tzinfo=UTC)  # 13:00 is still filling: the windows end at 13:00


def _report(device: str, version: str | None, *minutes: datetime) -> dict[str, Any]:
    windows = [
        {"minute": m.isoformat(), "package_version": version, "inferences": 2, "successes": 2, "views": 2}
        for m in minutes
    ]
    sent_at = datetime.now(UTC).isoformat()
    return {"device_id": device, "scene": "watch_time", "sent_at": sent_at, "windows": windows, "dropped_events": 0}


def _uv(text: str) -> dict[tuple[str, str], float]:
    family = next(f for f in text_string_to_metric_families(text) if f.name == "pitahaya_device_uv")
    assert family.type == "gauge"
    return {
        (s.labels["package_version"], s.labels["window"]): s.value
        for s in family.samples
        if s.labels["scene"] == "watch_time"
    }


def test_uv_counts_distinct_devices_per_version_over_the_last_complete_minutes(
    app: Any, client: TestClient, device_auth: dict[str, str]
) -> None:
    minute = NOW.replace(second=0)
    last, three_ago, half_hour_ago, two_hours_ago = (minute - timedelta(minutes=m) for m in (1, 3, 30, 120))
    reports = [
        _report("a", "1.0.0", last, three_ago),  # one device, several minutes: counted once per window
        _report("b", "1.0.0", three_ago),
        _report("c", "1.0.0", half_hour_ago),
        _report("d", "1.0.0", two_hours_ago),  # outside every window
        _report("e", "1.0.0", minute),  # the current minute: not complete yet
        _report("f", None, last),  # the default policy
        _report("g", "0.9.0", two_hours_ago),  # no series: nothing in the last hour
    ]
    for report in reports:
        assert client.post("/api/v1/telemetry", json=report, headers=device_auth).status_code == 202

    registry = CollectorRegistry()
    registry.register(TelemetryCollector(app.state.registry.sessions, clock=lambda: NOW))
    uv = _uv(generate_latest(registry).decode())

    assert uv == {
        ("1.0.0", "1m"): 1,
        ("1.0.0", "5m"): 2,
        ("1.0.0", "1h"): 3,
        ("default-policy", "1m"): 1,
        ("default-policy", "5m"): 1,
        ("default-policy", "1h"): 1,
    }


def test_metrics_endpoint_serves_the_uv_gauge_with_the_wall_clock(
    client: TestClient, device_auth: dict[str, str]
) -> None:
    two_minutes_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    for device in ("a", "b", "a"):
        report = _report(device, "1.0.0", two_minutes_ago)
        assert client.post("/api/v1/telemetry", json=report, headers=device_auth).status_code == 202

    uv = _uv(client.get("/metrics").text)

    # The 1m window depends on when the scrape lands; the 5m and 1h windows hold both devices.
    assert uv[("1.0.0", "5m")] == 2 and uv[("1.0.0", "1h")] == 2
