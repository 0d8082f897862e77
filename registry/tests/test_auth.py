"""API tokens: roles, hashing at rest, revocation; 401/403; per-token and per-address rate limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from pitahaya.registry import Settings
from pitahaya.registry.models import ApiToken


def _token(client: TestClient, auth: dict[str, str], name: str, role: str) -> dict[str, str]:
    response = client.post("/api/v1/tokens", json={"name": name, "role": role}, headers=auth)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['secret']}"}


def test_roles_allow_their_operations_and_refuse_others_with_403(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    publisher = _token(client, auth, "ci-publisher", "publisher")
    operator = _token(client, auth, "oncall", "operator")
    device = _token(client, auth, "fleet", "client")
    release = {"version": "1.0.0"}

    assert client.post("/api/v1/packages", content=make_archive(), headers=operator).status_code == 403
    assert client.post("/api/v1/packages", content=make_archive(), headers=device).status_code == 403
    assert client.post("/api/v1/packages", content=make_archive(), headers=publisher).status_code == 201
    refused = client.post("/api/v1/scenes/watch_time/releases", json=release, headers=publisher)
    assert refused.status_code == 403
    assert "role 'publisher'" in refused.json()["detail"] and "'operator'" in refused.json()["detail"]
    created = client.post("/api/v1/scenes/watch_time/releases", json=release, headers=operator)
    assert created.status_code == 201
    assert created.json()["created_by"] == "oncall"
    assert client.get("/api/v1/tokens", headers=operator).status_code == 403


def test_missing_and_unknown_tokens_are_401_with_a_challenge(
    client: TestClient, make_archive: Callable[..., bytes]
) -> None:
    for headers in ({}, {"Authorization": "Bearer pth_not-a-real-token"}, {"Authorization": "Basic abc"}):
        response = client.post("/api/v1/packages", content=make_archive(), headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["detail"]


def test_secrets_are_shown_once_hashed_at_rest_and_revocation_takes_effect(
    app: object, client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    response = client.post("/api/v1/tokens", json={"name": "ci", "role": "publisher"}, headers=auth)
    secret = response.json()["secret"]
    headers = {"Authorization": f"Bearer {secret}"}

    with app.state.registry.sessions() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(ApiToken)).one()
    assert secret.startswith("pth_") and secret not in (row.token_hash, row.name)
    listed = client.get("/api/v1/tokens", headers=auth).json()
    assert listed == [
        {"name": "ci", "role": "publisher", "created_at": listed[0]["created_at"], "created_by": "bootstrap",
         "revoked_at": None}
    ]  # fmt: skip
    assert client.post("/api/v1/tokens", json={"name": "ci", "role": "client"}, headers=auth).status_code == 409

    assert client.delete("/api/v1/tokens/ci", headers=auth).status_code == 200
    assert client.post("/api/v1/packages", content=make_archive(), headers=headers).status_code == 401
    assert client.get("/api/v1/tokens", headers=auth).json()[0]["revoked_at"] is not None
    assert client.delete("/api/v1/tokens/nobody", headers=auth).status_code == 404


@pytest.mark.parametrize("body", [{"name": "Bad Name", "role": "publisher"}, {"name": "x", "role": "root"}])
def test_invalid_token_requests_are_422(client: TestClient, auth: dict[str, str], body: dict[str, str]) -> None:
    assert client.post("/api/v1/tokens", json=body, headers=auth).status_code == 422


def _limited_client(
    start_registry: Callable[[Settings], FastAPI], settings: Settings, tmp_path: Path, **limits: str
) -> TestClient:
    limited = settings.model_copy(update={"data_dir": tmp_path / "limited", **limits})
    return TestClient(start_registry(limited))


def test_a_token_over_its_limit_gets_429_with_retry_after(
    start_registry: Callable[[Settings], FastAPI], settings: Settings, tmp_path: Path, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with _limited_client(start_registry, settings, tmp_path, rate_limit_per_token="3/minute") as client:
        statuses = [client.get("/api/v1/tokens", headers=auth).status_code for _ in range(4)]
        refused = client.get("/api/v1/tokens", headers=auth)

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "rate limit" in refused.json()["detail"]


def test_an_address_over_its_limit_gets_429_but_tuf_files_are_not_limited(
    start_registry: Callable[[Settings], FastAPI], settings: Settings, tmp_path: Path
) -> None:
    with _limited_client(start_registry, settings, tmp_path, rate_limit_per_ip="2/minute") as client:
        statuses = [client.get("/api/v1/packages").status_code for _ in range(3)]
        tuf = [client.get("/tuf/metadata/timestamp.json").status_code for _ in range(5)]

    assert statuses == [200, 200, 429]
    assert tuf == [200] * 5


def test_a_client_token_shared_by_a_fleet_is_not_limited_per_token(
    start_registry: Callable[[Settings], FastAPI], settings: Settings, tmp_path: Path, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with _limited_client(start_registry, settings, tmp_path, rate_limit_per_token="3/minute") as client:
        secret = client.post("/api/v1/tokens", json={"name": "app", "role": "client"}, headers=auth).json()["secret"]
        device = {"Authorization": f"Bearer {secret}"}
        report = {"device_id": "d", "scene": "watch_time", "sent_at": "2026-03-01T12:35:02Z", "windows": []}
        statuses = {client.post("/api/v1/telemetry", json=report, headers=device).status_code for _ in range(6)}
        operator = [client.get("/api/v1/tokens", headers=auth).status_code for _ in range(3)]
    assert statuses == {202}  # six reports from a fleet's token: none refused
    assert operator[-1] == 429  # other roles keep their per-token limit
