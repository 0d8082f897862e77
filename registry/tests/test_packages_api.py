"""``/api/v1/packages``: push, duplicates, auth, validation, limits, lookups."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi.testclient import TestClient

from pitahaya.client_runtime.package import target_path


def test_push_returns_201_and_lists_the_package(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    archive = make_archive(version="1.0.0")

    response = client.post("/api/v1/packages", content=archive, headers=auth)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scene"] == "watch_time" and body["version"] == "1.0.0"
    assert body["sha256"] == hashlib.sha256(archive).hexdigest()
    assert body["size_bytes"] == len(archive)
    assert body["target_path"] == target_path("watch_time", "1.0.0")
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert client.get("/api/v1/packages").json() == [body]
    assert client.get("/api/v1/packages", params={"scene": "other"}).json() == []
    assert client.get("/api/v1/scenes/watch_time/packages/1.0.0").json() == body


def test_duplicate_push_is_409_and_changes_nothing(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    client.post("/api/v1/packages", content=make_archive(), headers=auth)
    before = (client.get("/api/v1/packages").json(), client.get("/tuf/metadata/timestamp.json").content)

    response = client.post("/api/v1/packages", content=make_archive(), headers=auth)

    assert response.status_code == 409
    assert "already published" in response.json()["detail"]
    assert (client.get("/api/v1/packages").json(), client.get("/tuf/metadata/timestamp.json").content) == before


def test_push_without_or_with_wrong_token_is_401(client: TestClient, make_archive: Callable[..., bytes]) -> None:
    archive = make_archive()
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic abc"}):
        response = client.post("/api/v1/packages", content=archive, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/v1/packages").json() == []


def test_tampered_archive_is_422_with_a_readable_message(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    archive = bytearray(make_archive())
    archive[len(archive) // 2] ^= 0x01

    response = client.post("/api/v1/packages", content=bytes(archive), headers=auth)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "archive" in detail
    assert client.get("/api/v1/packages").json() == []


def test_archive_over_the_upload_limit_is_413(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/api/v1/packages", content=b"\0" * (1024 * 1024 + 1), headers=auth)

    assert response.status_code == 413
    assert "upload limit" in response.json()["detail"]


def test_unknown_package_is_404_and_bad_scene_is_422(client: TestClient) -> None:
    assert client.get("/api/v1/scenes/watch_time/packages/9.9.9").status_code == 404
    assert client.get("/api/v1/scenes/Bad-Scene/packages/1.0.0").status_code == 422


def test_metadata_and_targets_answer_conditional_and_range_requests(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    archive = make_archive()
    pushed = client.post("/api/v1/packages", content=archive, headers=auth).json()
    url = f"/tuf/targets/packages/watch_time/{pushed['sha256']}.watch_time-1.0.0.tar.xz"

    timestamp = client.get("/tuf/metadata/timestamp.json")
    assert timestamp.headers["Cache-Control"] == "no-cache"
    revalidated = client.get("/tuf/metadata/timestamp.json", headers={"If-None-Match": timestamp.headers["ETag"]})
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert client.get(url, headers={"If-None-Match": f'"{pushed["sha256"]}"'}).status_code == 304

    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == archive[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(archive)}"
    assert client.get(url, headers={"Range": "bytes=-5"}).content == archive[-5:]
    assert client.get(url, headers={"Range": f"bytes={len(archive)}-"}).status_code == 416
    assert client.get(url, headers={"Range": "bytes=0-1,5-6"}).content == archive  # multi-range: whole file
