"""Both blob backends (local folder, real S3 server) obey the same rules; orphans are collected."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pitahaya.registry import Settings, collect_garbage
from pitahaya.registry.blobs import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from pitahaya.registry.errors import NotFoundError, StorageUnavailableError
from servers import S3Endpoint


@pytest.fixture
def store(settings: Settings) -> Iterator[BlobStore]:
    blob_store = open_blob_store(settings)
    assert isinstance(blob_store, S3BlobStore if settings.s3_bucket else LocalBlobStore)
    yield blob_store


def test_put_get_list_delete(store: BlobStore) -> None:
    digest = store.put(b"hello")

    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == digest and store.get(digest) == b"hello" and store.verify(digest)
    listed = dict(store.list())
    assert list(listed) == [digest]
    assert abs(listed[digest] - datetime.now(UTC)) < timedelta(minutes=5)
    store.delete(digest)
    assert not store.exists(digest) and not store.verify(digest)
    with pytest.raises(NotFoundError):
        store.get(digest)
    store.check()


def test_s3_credentials_are_enforced(registry_s3_server: S3Endpoint, settings_for_s3: Settings) -> None:
    from pydantic import SecretStr

    wrong = settings_for_s3.model_copy(update={"s3_secret_access_key": SecretStr("wrong-secret")})
    with pytest.raises(StorageUnavailableError, match="S3 failed"):
        open_blob_store(wrong)


@pytest.fixture
def settings_for_s3(registry_s3_server: S3Endpoint, tmp_path: Path, token: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        registry_token=token,
        s3_bucket="credentials-test",
        s3_endpoint_url=registry_s3_server.endpoint_url,
        s3_access_key_id=registry_s3_server.access_key,
        s3_secret_access_key=registry_s3_server.secret_key,
    )


def test_gc_deletes_old_orphans_and_keeps_referenced_and_young_blobs(
    app: FastAPI, client: TestClient, auth: dict[str, str], settings: Settings, make_archive: object
) -> None:
    pushed = client.post("/api/v1/packages", content=make_archive(), headers=auth).json()  # type: ignore[operator]
    orphan = app.state.registry.blobs.put(b"left behind by a crashed push")

    young = collect_garbage(settings, min_age_seconds=3600)
    assert young.deleted == [] and young.kept_young == [orphan]
    dry = collect_garbage(settings, min_age_seconds=0, dry_run=True)
    assert dry.deleted == [orphan] and app.state.registry.blobs.exists(orphan)
    done = collect_garbage(settings, min_age_seconds=0)

    assert done.deleted == [orphan]
    assert not app.state.registry.blobs.exists(orphan)
    assert app.state.registry.blobs.verify(pushed["sha256"])


def test_local_store_skips_temp_files_of_writes_in_flight(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest = store.put(b"x")
    (store.path(digest).parent / f".{digest[2:]}.abc.tmp").write_bytes(b"partial")

    assert [d for d, _ in store.list()] == [digest]
