"""Release operations: targeting, widen, pause, resume, rollback, kill switch, audit, verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pitahaya.client_runtime import Release

SCENE = "/api/v1/scenes/watch_time"


@pytest.fixture
def published(client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert client.post("/api/v1/packages", content=make_archive(version=version), headers=auth).status_code == 201


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _document(client: TestClient, release: dict[str, Any]) -> Release:
    response = client.get(f"/tuf/targets/releases/watch_time/{release['sha256']}.{release['channel']}.json")
    assert response.status_code == 200
    return Release.from_json(response.content)


@pytest.mark.usefixtures("published")
def test_operations_publish_new_signed_documents_and_are_audited(client: TestClient, auth: dict[str, str]) -> None:
    _ok(client.post(f"{SCENE}/releases", json={"version": "1.0.0"}, headers=auth))
    canary = _ok(
        client.post(
            f"{SCENE}/releases",
            json={"version": "1.1.0", "rollout_percent": 10, "targeting": {"platforms": ["android"]}},
            headers=auth,
        )
    )
    assert canary["previous_version"] == "1.0.0"
    assert canary["targeting"] == {"platforms": ["android"], "app_version_min": None, "app_version_max": None}

    widened = _ok(client.post(f"{SCENE}/channels/stable/widen", json={"rollout_percent": 50}, headers=auth))
    paused = _ok(client.post(f"{SCENE}/channels/stable/pause", headers=auth))
    resumed = _ok(client.post(f"{SCENE}/channels/stable/resume", headers=auth))
    killed = _ok(client.post(f"{SCENE}/channels/stable/kill-switch", json={"enabled": True}, headers=auth))
    rolled_back = _ok(client.post(f"{SCENE}/channels/stable/rollback", json={"version": "1.0.0"}, headers=auth))

    assert (widened["rollout_percent"], widened["package_version"], widened["previous_version"]) == (
        50,
        "1.1.0",
        "1.0.0",
    )
    assert widened["targeting"]["platforms"] == ["android"]
    assert _document(client, paused).paused is True
    assert _document(client, resumed).paused is False
    assert _document(client, killed).version_for("any", platform="android") is None
    back = _document(client, rolled_back)
    assert (back.package_version, back.rollout_percent, back.kill_switch, back.paused) == ("1.0.0", 100.0, False, False)
    assert back.version_for("any") == "1.0.0"
    ids = [r["release_id"] for r in (canary, widened, paused, resumed, killed, rolled_back)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # every operation is a new release

    audit = client.get("/api/v1/audit", headers=auth).json()
    assert [e["action"] for e in audit[:6]] == [
        "rollback_release",
        "kill_release",
        "resume_release",
        "pause_release",
        "widen_release",
        "create_release",
    ]
    assert {e["actor"] for e in audit} == {"bootstrap"} and all(e["at"] for e in audit)


@pytest.mark.usefixtures("published")
def test_paused_devices_keep_the_previous_version_and_targeting_limits_the_rollout(
    client: TestClient, auth: dict[str, str]
) -> None:
    _ok(client.post(f"{SCENE}/releases", json={"version": "1.0.0"}, headers=auth))
    targeted = {"version": "1.1.0", "targeting": {"platforms": ["ios"], "app_version_min": "2.0.0"}}
    doc = _document(client, _ok(client.post(f"{SCENE}/releases", json=targeted, headers=auth)))

    assert doc.version_for("d", platform="ios", app_version="2.1.0") == "1.1.0"
    assert doc.version_for("d", platform="ios", app_version="1.9.9") == "1.0.0"
    assert doc.version_for("d", platform="android", app_version="2.1.0") == "1.0.0"
    paused = _document(client, _ok(client.post(f"{SCENE}/channels/stable/pause", headers=auth)))
    assert paused.version_for("d", platform="ios", app_version="2.1.0") == "1.0.0"


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("widen", {"rollout_percent": 5}, 422, "above the current"),
        ("rollback", {"version": "1.2.0"}, 422, "older than the live"),
        ("rollback", {"version": "0.9.0"}, 404, "not published"),
        ("rollback", {"version": "1.0"}, 422, "version"),
        ("widen", {"rollout_percent": 101}, 422, "rollout_percent"),
    ],
)
def test_invalid_operations_are_refused_with_readable_messages(
    client: TestClient, auth: dict[str, str], path: str, body: dict[str, Any], status: int, message: str
) -> None:
    _ok(client.post(f"{SCENE}/releases", json={"version": "1.1.0", "rollout_percent": 10}, headers=auth))
    response = client.post(f"{SCENE}/channels/stable/{path}", json=body, headers=auth)

    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])


def test_operations_on_a_channel_without_a_release_are_404(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(f"{SCENE}/channels/canary/pause", headers=auth)
    assert response.status_code == 404
    assert "no release on channel canary" in response.json()["detail"]


@pytest.mark.parametrize(
    "targeting",
    [{"platforms": []}, {"app_version_min": "2.0.0", "app_version_max": "1.0.0"}, {"app_version_min": "x"}],
)
@pytest.mark.usefixtures("published")
def test_invalid_targeting_is_422(client: TestClient, auth: dict[str, str], targeting: dict[str, Any]) -> None:
    body = {"version": "1.0.0", "targeting": targeting}
    assert client.post(f"{SCENE}/releases", json=body, headers=auth).status_code == 422


@pytest.mark.usefixtures("published")
def test_a_release_never_names_a_package_whose_archive_fails_verification(
    app: FastAPI, client: TestClient, auth: dict[str, str]
) -> None:
    package = client.get(f"{SCENE}/packages/1.2.0").json()
    app.state.registry.blobs.delete(package["sha256"])  # storage lost the archive

    response = client.post(f"{SCENE}/releases", json={"version": "1.2.0"}, headers=auth)

    assert response.status_code == 409
    assert "missing or corrupt" in response.json()["detail"]
    assert client.get(f"{SCENE}/releases").json() == []  # nothing was published


@pytest.mark.usefixtures("published")
def test_a_ten_percent_release_reaches_a_binomially_plausible_share_of_10000_devices(
    client: TestClient, auth: dict[str, str]
) -> None:
    _ok(client.post(f"{SCENE}/releases", json={"version": "1.0.0"}, headers=auth))
    doc = _document(
        client, _ok(client.post(f"{SCENE}/releases", json={"version": "1.1.0", "rollout_percent": 10}, headers=auth))
    )

    n, p = 10_000, 0.10
    chosen = sum(doc.version_for(f"device-{i}") == "1.1.0" for i in range(n))

    half_width = 2.5758 * (n * p * (1 - p)) ** 0.5  # two-sided 99 % normal approximation of the binomial
    assert n * p - half_width <= chosen <= n * p + half_width
    assert sum(doc.version_for(f"device-{i}") == "1.0.0" for i in range(n)) == n - chosen
