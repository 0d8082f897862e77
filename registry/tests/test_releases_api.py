"""``/api/v1/scenes/{scene}/releases``: creating releases and their signed documents."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.releases import release_target_path


@pytest.fixture
def published(client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert client.post("/api/v1/packages", content=make_archive(version=version), headers=auth).status_code == 201


def _release(client: TestClient, auth: dict[str, str], **body: object) -> dict[str, object]:
    response = client.post("/api/v1/scenes/watch_time/releases", json=body, headers=auth)
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


def test_release_of_unknown_version_is_404(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/api/v1/scenes/watch_time/releases", json={"version": "3.0.0"}, headers=auth)

    assert response.status_code == 404
    assert "not published" in response.json()["detail"]


@pytest.mark.usefixtures("published")
def test_release_requires_the_token(client: TestClient) -> None:
    response = client.post("/api/v1/scenes/watch_time/releases", json={"version": "1.0.0"})

    assert response.status_code == 401


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(
    "body",
    [{"version": "1.0"}, {"version": "1.0.0", "rollout_percent": 101}, {"version": "1.0.0", "channel": "../x"}],
)
def test_invalid_release_bodies_are_422(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> None:
    assert client.post("/api/v1/scenes/watch_time/releases", json=body, headers=auth).status_code == 422


@pytest.mark.usefixtures("published")
def test_release_document_is_published_as_a_signed_target(client: TestClient, auth: dict[str, str]) -> None:
    release = _release(client, auth, version="1.0.0", channel="stable", rollout_percent=100)

    assert release["release_id"] == 1
    assert release["target_path"] == release_target_path("watch_time", "stable")
    assert release["previous_version"] is None
    doc = client.get(f"/tuf/targets/releases/watch_time/{release['sha256']}.stable.json")
    assert doc.status_code == 200
    assert Release.from_json(doc.content) == Release(
        scene="watch_time",
        channel="stable",
        release_id=1,
        package_version="1.0.0",
        rollout_percent=100.0,
        previous_version=None,
        kill_switch=False,
        created_at=doc.json()["created_at"],
        created_by="bootstrap",
    )


@pytest.mark.usefixtures("published")
def test_previous_version_is_what_the_channel_was_fully_on(client: TestClient, auth: dict[str, str]) -> None:
    _release(client, auth, version="1.0.0")
    canary = _release(client, auth, version="1.1.0", rollout_percent=10)
    wider = _release(client, auth, version="1.2.0", rollout_percent=50)
    full = _release(client, auth, version="1.2.0", rollout_percent=100)
    rollback = _release(client, auth, version="1.0.0")
    other_channel = _release(client, auth, version="1.1.0", channel="canary", rollout_percent=5)

    assert canary["previous_version"] == "1.0.0"
    assert wider["previous_version"] == "1.0.0"  # 1.1.0 never reached everyone
    assert full["previous_version"] == "1.0.0"
    assert rollback["previous_version"] == "1.2.0"
    assert other_channel["previous_version"] is None
    listed = client.get("/api/v1/scenes/watch_time/releases", params={"channel": "stable"}).json()
    assert [r["release_id"] for r in listed] == [5, 4, 3, 2, 1]
    assert len(client.get("/api/v1/scenes/watch_time/releases").json()) == 6
