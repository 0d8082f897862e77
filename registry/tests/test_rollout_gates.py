"""Quality-gated rollouts through the registry: real telemetry in, signed releases and audit out.

Devices are stood in for by their reports (``POST /api/v1/telemetry`` with a client token),
each from the version the signed release document assigns to it, so the gate sees exactly
what a fleet would send. The gate is evaluated by calling `evaluate_gates`, as the app's
background task does every ``gate_interval_seconds``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.telemetry import LATENCY_US_BOUNDS
from pitahaya.registry.services.gates import evaluate_gates

SCENE = "/api/v1/scenes/watch_time"
FLEET = [f"device-{i}" for i in range(60)]
GATE = {"steps": [20, 50, 100], "min_inferences": 300, "min_outcomes": 100, "min_step_seconds": 0}


@pytest.fixture
def published(client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]) -> None:
    for version in ("1.0.0", "1.1.0"):
        assert client.post("/api/v1/packages", content=make_archive(version=version), headers=auth).status_code == 201
    assert client.post(f"{SCENE}/releases", json={"version": "1.0.0"}, headers=auth).status_code == 201


def _live(client: TestClient, auth: dict[str, str]) -> Release:
    status = client.get(f"{SCENE}/channels/stable/rollout", headers=auth).json()
    document = client.get(f"/tuf/targets/releases/watch_time/{status['sha256']}.stable.json")
    return Release.from_json(document.content)


def _minute_of_reports(
    client: TestClient, auth: dict[str, str], device_auth: dict[str, str], rng: random.Random, bad: str = ""
) -> None:
    """Every device reports one minute of decisions from the version the live release gives it."""
    release = _live(client, auth)
    minute = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:00Z")
    for device in FLEET:
        version = release.version_for(device)
        is_new = version == "1.1.0"
        calls = 20
        fallbacks = calls if (is_new and bad == "fallback") else rng.choice([0, 0, 0, 1])
        counts = [0] * (len(LATENCY_US_BOUNDS) + 1)
        for _ in range(calls):
            counts[min(rng.randrange(12, 20), len(LATENCY_US_BOUNDS))] += 1
        errors = [rng.expovariate(1 / (40.0 if (is_new and bad == "mae") else 10.0)) for _ in range(8)]
        window = {
            "minute": minute,
            "package_version": version,
            "inferences": calls,
            "successes": calls - fallbacks,
            "fallbacks": {"timeout": fallbacks} if fallbacks else {},
            "latency_us_bounds": list(LATENCY_US_BOUNDS),
            "latency_us_counts": counts,
            "views": calls,
            "outcomes": len(errors),
            "abs_error_sum_s": sum(errors),
            "abs_error_sq_sum_s2": sum(e * e for e in errors),
        }
        body = {"device_id": device, "scene": "watch_time", "sent_at": minute, "windows": [window], "dropped_events": 0}
        response = client.post("/api/v1/telemetry", json=body, headers=device_auth)
        assert response.status_code == 202, response.text


def _evaluate(app: FastAPI) -> list[dict[str, Any]]:
    context = app.state.registry
    return evaluate_gates(sessions=context.sessions, blobs=context.blobs, tuf=context.tuf)


@pytest.mark.usefixtures("published")
def test_a_good_release_advances_step_by_step_to_everyone_with_audited_evidence(
    app: FastAPI, client: TestClient, auth: dict[str, str], device_auth: dict[str, str]
) -> None:
    created = client.post(f"{SCENE}/releases", json={"version": "1.1.0", "gate": GATE}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["rollout_percent"] == 20
    rng = random.Random(1)
    percents = []
    for _ in range(12):
        _minute_of_reports(client, auth, device_auth, rng)
        _evaluate(app)
        status = client.get(f"{SCENE}/channels/stable/rollout", headers=auth).json()
        percents.append(status["rollout_percent"])
        if status["gate"]["state"] != "observing":
            break
    assert status["gate"]["state"] == "complete", status["gate"]["evidence"]
    assert percents == sorted(percents) and percents[-1] == 100
    assert [step["action"] for step in status["gate"]["history"]] == ["advance", "advance", "complete"]
    assert _live(client, auth).version_for("any-device") == "1.1.0"
    audit = client.get("/api/v1/audit", headers=auth).json()
    advances = [e for e in audit if e["action"] == "gate_advance"]
    assert len(advances) == 2 and all(e["actor"] == "gate" for e in advances)
    assert {c["name"] for c in advances[0]["detail"]["evidence"]["checks"]} >= {"fallback_rate", "mae"}
    metrics = client.get("/metrics").text
    assert 'pitahaya_rollout_percent{channel="stable",package_version="1.1.0",scene="watch_time"} 100.0' in metrics
    assert 'pitahaya_rollout_gate_state{channel="stable",scene="watch_time",state="complete"} 1.0' in metrics


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(("on_fail", "state"), [("pause", "paused"), ("rollback", "rolled_back")])
def test_a_failing_release_is_stopped_at_its_first_step_and_devices_return(
    app: FastAPI, client: TestClient, auth: dict[str, str], device_auth: dict[str, str], on_fail: str, state: str
) -> None:
    gate = {**GATE, "on_fail": on_fail}
    assert client.post(f"{SCENE}/releases", json={"version": "1.1.0", "gate": gate}, headers=auth).status_code == 201
    rng = random.Random(2)
    exposure = []
    for _ in range(6):
        exposure.append(sum(_live(client, auth).version_for(d) == "1.1.0" for d in FLEET) / len(FLEET))
        _minute_of_reports(client, auth, device_auth, rng, bad="fallback")
        steps = _evaluate(app)
        if steps:
            break
    status = client.get(f"{SCENE}/channels/stable/rollout", headers=auth).json()
    assert status["gate"]["state"] == state
    assert max(exposure) <= 0.2 + 0.1  # the first step's share, give or take a small fleet's buckets
    assert {_live(client, auth).version_for(d) for d in FLEET} == {"1.0.0"}
    evidence = status["gate"]["history"][-1]["evidence"]
    assert evidence["verdict"] == "worse" and any(r.startswith("fallback_rate") for r in evidence["reasons"])
    audit = client.get("/api/v1/audit", headers=auth).json()
    assert audit[0]["action"] == f"gate_{on_fail}" or audit[1]["action"] == f"gate_{on_fail}"


@pytest.mark.usefixtures("published")
def test_an_operator_release_supersedes_the_gate_and_bad_specs_are_refused(
    app: FastAPI, client: TestClient, auth: dict[str, str]
) -> None:
    assert client.post(f"{SCENE}/releases", json={"version": "1.1.0", "gate": GATE}, headers=auth).status_code == 201
    assert client.post(f"{SCENE}/releases", json={"version": "1.0.0"}, headers=auth).status_code == 201
    _evaluate(app)
    assert client.get(f"{SCENE}/channels/stable/rollout", headers=auth).json()["gate"]["state"] == "superseded"

    for body in (
        {"version": "1.1.0", "gate": {"steps": [50, 10]}},
        {"version": "1.1.0", "gate": {"preset": "nope"}},
        {"version": "1.1.0", "gate": GATE, "rollout_percent": 5},
    ):
        assert client.post(f"{SCENE}/releases", json=body, headers=auth).status_code == 422
    preset = client.post(f"{SCENE}/releases", json={"version": "1.1.0", "gate": {"preset": "standard"}}, headers=auth)
    assert preset.json()["rollout_percent"] == 1
    assert client.get(f"{SCENE}/channels/stable/rollout").status_code == 401
