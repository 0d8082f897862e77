"""Service-level guarantees: audit trail and serialized concurrent publishes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from pitahaya.client_runtime.package import target_path
from pitahaya.registry.models import AuditEntry


def test_every_accepted_write_is_audited_and_refusals_are_not(
    app: FastAPI, client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    client.post("/api/v1/packages", content=make_archive(), headers=auth)
    client.post("/api/v1/packages", content=make_archive(), headers=auth)  # 409
    client.post("/api/v1/scenes/watch_time/releases", json={"version": "1.0.0"}, headers=auth)

    with app.state.registry.sessions() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(e.actor, e.action) for e in entries] == [("bootstrap", "push_package"), ("bootstrap", "create_release")]
    assert entries[1].detail["release_id"] == 1


def test_concurrent_pushes_all_land_in_the_signed_targets(
    app: FastAPI, client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]
) -> None:
    versions = [f"1.0.{patch}" for patch in range(8)]
    archives = {version: make_archive(version=version) for version in versions}
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda v: client.post("/api/v1/packages", content=archives[v], headers=auth).status_code, versions)
        )

    assert statuses == [201] * len(versions)
    assert set(app.state.registry.tuf.targets()) == {target_path("watch_time", v) for v in versions}
