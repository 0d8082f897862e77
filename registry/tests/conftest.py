"""Fixtures: a registry on a fresh data dir, in-process (TestClient) or on a real socket.

Every test that builds a registry (``settings`` → ``app`` → ``client``) runs twice, once per
storage `backend`: SQLite + local blob folder, and a real PostgreSQL server + a real
S3-compatible server (SeaweedFS), both on 127.0.0.1 and started once per session. Each test
gets its own PostgreSQL database and bucket. Without the servers the second variant skips
(it fails under ``CI=true``).

Test modules take the archive factory and auth headers as fixtures (``make_archive``,
``auth``, ``client_auth``, ``device_auth``), so no helper module has to be importable under
``--import-mode=importlib``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pitahaya.client_runtime import Manifest, TensorSpec, build_archive
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, file_entry
from pitahaya.registry import Settings, create_app
from servers import S3Endpoint, postgres_url_fixture, s3_endpoint_fixture

with warnings.catch_warnings():
    # Starlette nudges towards httpx2; TestClient still works on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


TOKEN = "test-registry-token-0123456789"


def build_test_archive(
    scene: str = "watch_time", version: str = "1.0.0", *, mlflow: dict[str, Any] | None = None
) -> bytes:
    """A well-formed package; the model is dummy bytes (the registry never loads it).

    ``mlflow``: the manifest's provenance (the training run), as the packager writes it.
    """
    payload = {
        MODEL_FILE: f"dummy onnx model {scene} {version}".encode(),
        FEATURES_FILE: b"class Extractor:\n    pass\n",
        SELFTEST_FILE: json.dumps({"cases": []}).encode(),
    }
    manifest = Manifest(
        scene=scene,
        version=version,
        feature_names=("a", "b"),
        input=TensorSpec("input", "float32", (None, 2)),
        output=TensorSpec("output", "float32", (None, 1)),
        files={name: file_entry(data) for name, data in payload.items()},
        mlflow=mlflow or {},
    )
    return build_archive(manifest, payload)


@pytest.fixture
def make_archive() -> Callable[..., bytes]:
    return build_test_archive


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client_auth(auth: dict[str, str]) -> Callable[[TestClient], dict[str, str]]:
    """Mints a ``client``-role token (what devices send telemetry with) on a registry; its headers."""

    def mint(client: TestClient) -> dict[str, str]:
        created = client.post("/api/v1/tokens", json={"name": "fleet", "role": "client"}, headers=auth)
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['secret']}"}

    return mint


@pytest.fixture
def device_auth(client: TestClient, client_auth: Callable[[TestClient], dict[str, str]]) -> dict[str, str]:
    """Client-token headers on the test's registry (``client``)."""
    return client_auth(client)


@dataclass(frozen=True)
class Backend:
    """Where a test registry keeps metadata and blobs; `settings_fields` go into `Settings`."""

    name: str
    database_url: str | None = None
    s3: S3Endpoint | None = None
    bucket: str | None = None

    @property
    def settings_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"database_url": self.database_url}
        if self.s3 is not None:
            fields.update(
                s3_bucket=self.bucket,
                s3_endpoint_url=self.s3.endpoint_url,
                s3_region=self.s3.region,
                s3_access_key_id=self.s3.access_key,
                s3_secret_access_key=self.s3.secret_key,
            )
        return fields


@pytest.fixture(scope="session")
def registry_postgres_server() -> Iterator[str]:
    yield from postgres_url_fixture()


@pytest.fixture(scope="session")
def registry_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    yield from s3_endpoint_fixture(tmp_path_factory)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the session's server; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite-local", pytest.param("postgres-s3", marks=pytest.mark.scale)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The storage pair a test registry runs on (see the module docstring)."""
    if request.param == "sqlite-local":
        yield Backend(request.param)
        return
    server_url = request.getfixturevalue("registry_postgres_server")
    s3 = request.getfixturevalue("registry_s3_server")
    with fresh_database(server_url) as database_url:
        yield Backend(request.param, database_url=database_url, s3=s3, bucket=f"t-{uuid.uuid4().hex[:16]}")


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path) -> str:
    """The backend's database URL (a SQLite file under ``tmp_path`` for the local backend)."""
    return backend.database_url or f"sqlite:///{tmp_path / 'sub' / 'registry.db'}"


@pytest.fixture
def settings(tmp_path: Path, token: str, backend: Backend) -> Settings:
    """A registry without pre-flight: these archives' models are dummy bytes no device could load
    (``test_preflight.py`` pushes real packages with it on), nor forwarding to MLflow (the
    tests of forwarding turn it on with a store of their own)."""
    return Settings(
        data_dir=tmp_path / "data",
        registry_token=token,
        max_upload_bytes=1024 * 1024,
        preflight_enabled=False,
        mlflow_forwarding=False,
        **backend.settings_fields,
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 in a background thread."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
