"""A publication interrupted between its commit and its metadata becoming visible is finished;
one interrupted before its commit is dropped (``services/publication.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pitahaya.client_runtime.package import target_path
from pitahaya.registry import Settings, create_app
from pitahaya.registry.blobs import sha256_hex
from pitahaya.registry.errors import PublicationPendingError
from pitahaya.registry.tuf import TufRepository

if TYPE_CHECKING:
    from conftest import MetadataFault  # a fixture's type; conftest is never imported at run time


def _next_snapshot_file(tuf: TufRepository) -> str:
    timestamp = json.loads(tuf.metadata_bytes("timestamp.json"))
    return f"{timestamp['signed']['meta']['snapshot.json']['version'] + 1}.snapshot.json"


def test_a_commit_whose_metadata_did_not_become_visible_is_published_on_restart(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    auth: dict[str, str],
    make_archive: Callable[..., bytes],
    metadata_fault: MetadataFault,
) -> None:
    tuf: TufRepository = app.state.registry.tuf
    with metadata_fault.applying(_next_snapshot_file(tuf)):  # serving it fails after the commit
        with pytest.raises(metadata_fault.error):
            client.post("/api/v1/packages", content=make_archive(), headers=auth)

        assert client.get("/api/v1/scenes/watch_time/packages/1.0.0").status_code == 200  # committed
        assert target_path("watch_time", "1.0.0") not in tuf.targets()  # not yet visible
        with pytest.raises(PublicationPendingError, match="pending"):  # nothing may publish over it
            tuf.refresh(margin=1.0)

    restarted: TufRepository = create_app(settings).state.registry.tuf
    assert restarted.pending_publication() is None
    assert target_path("watch_time", "1.0.0") in restarted.targets()
    with TestClient(create_app(settings)) as again:
        assert again.post("/api/v1/packages", content=make_archive(version="1.1.0"), headers=auth).status_code == 201
    assert {target_path("watch_time", v) for v in ("1.0.0", "1.1.0")} <= set(restarted.targets())


def test_metadata_staged_for_a_push_that_never_committed_is_dropped_and_the_push_can_be_redone(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    auth: dict[str, str],
    make_archive: Callable[..., bytes],
    metadata_fault: MetadataFault,
) -> None:
    tuf: TufRepository = app.state.registry.tuf
    archive = make_archive()
    before = tuf.metadata_bytes("timestamp.json")
    # What a registry killed after signing and before its commit leaves behind.
    tuf.stage_targets({target_path("watch_time", "1.0.0"): (len(archive), sha256_hex(archive))})
    assert tuf.pending_publication() is not None

    with TestClient(create_app(settings)) as restarted:
        assert tuf.pending_publication() is None and metadata_fault.leftovers() == []
        assert tuf.metadata_bytes("timestamp.json") == before and tuf.targets() == {}
        assert restarted.post("/api/v1/packages", content=archive, headers=auth).status_code == 201
    assert target_path("watch_time", "1.0.0") in tuf.targets()
