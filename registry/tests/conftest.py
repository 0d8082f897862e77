"""Fixtures: a registry on a fresh data dir, in-process (TestClient) or on a real socket.

Every test that builds a registry (``settings`` → ``app`` → ``client``) runs twice, once per
storage `backend`: SQLite + local blob folder + TUF metadata files, and the scale-out path: a
real PostgreSQL server holding the rows *and* the TUF metadata (``tuf_storage="database"``) + a
real S3-compatible server (SeaweedFS), both on 127.0.0.1 and started once per session. Each test
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
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.engine import make_url

from pitahaya.client_runtime import Manifest, TensorSpec, build_archive
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, file_entry
from pitahaya.registry import Settings, create_app
from pitahaya.registry.maintenance import migrate
from pitahaya.registry.tuf import TufRepository
from pitahaya.registry.tuf.sql_store import SqlStaging
from pitahaya.registry.tuf.staging import FileStaging
from pitahaya.registry.tuf.store import FileMetadataStore
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
        if self.database_url is not None:  # the scale-out path: replicas share no disk
            fields["tuf_storage"] = "database"
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


def start_registry(settings: Settings) -> FastAPI:
    """`create_app`, after ``migrate`` on the scale-out backend as a deployment runs it (a serving
    replica of a shared store never creates the repository)."""
    if settings.tuf_storage == "database":
        migrate(settings)
    return create_app(settings)


@pytest.fixture(name="start_registry")
def start_registry_fixture() -> Callable[[Settings], FastAPI]:
    """`start_registry`, for tests that start a registry on settings of their own."""
    return start_registry


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return start_registry(settings)


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


class MetadataFault:
    """Makes storing one TUF metadata version fail as a full disk would, on either metadata store:
    a folder in the way of its file, or a PostgreSQL trigger raising ``disk_full`` (SQLSTATE
    53100) on its row. Real failures of the real store, not a patched method.

    Attributes:
        error: What the failing write raises inside the registry.
    """

    _TRIGGER = "pitahaya_test_fault"

    def __init__(self, tuf: TufRepository, engine: Engine) -> None:
        self._tuf, self._engine = tuf, engine
        self._sql = isinstance(tuf.staging, SqlStaging)
        self.error: type[BaseException] = OperationalError if self._sql else OSError

    @contextlib.contextmanager
    def staging(self, name: str) -> Iterator[None]:
        """Staging the version served as ``name`` fails."""
        if self._sql:
            with self._trigger("INSERT", name):
                yield
            return
        assert isinstance(self._tuf.staging, FileStaging)
        with self._in_the_way(self._tuf.staging.folder / name):
            yield

    @contextlib.contextmanager
    def applying(self, name: str) -> Iterator[None]:
        """Serving the staged version ``name`` fails (after the publication's rows committed)."""
        if self._sql:
            with self._trigger("UPDATE", name):
                yield
            return
        assert isinstance(self._tuf.store, FileMetadataStore)
        with self._in_the_way(self._tuf.store.metadata_dir / name):
            yield

    def leftovers(self) -> list[str]:
        """Staged versions nothing serves: a publication discarded or applied leaves none."""
        if self._sql:
            with self._engine.connect() as connection:
                rows = connection.execute(text("SELECT role, version FROM tuf_metadata WHERE NOT published"))
                return [f"{version}.{role}.json" for role, version in rows]
        assert isinstance(self._tuf.staging, FileStaging)
        return [p.name for p in self._tuf.staging.folder.iterdir()]

    @staticmethod
    @contextlib.contextmanager
    def _in_the_way(path: Path) -> Iterator[None]:
        path.mkdir(parents=True)
        (path / "in-the-way").touch()
        try:
            yield
        finally:
            (path / "in-the-way").unlink()
            path.rmdir()

    @contextlib.contextmanager
    def _trigger(self, event: str, name: str) -> Iterator[None]:
        version, role = name.removesuffix(".json").split(".", 1)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE FUNCTION {self._TRIGGER}() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.role = '{role}' AND NEW.version = {int(version)} THEN "
                    "RAISE EXCEPTION 'no space left on device (injected)' USING ERRCODE = 'disk_full'; "
                    "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    f"CREATE TRIGGER {self._TRIGGER} BEFORE {event} ON tuf_metadata "
                    f"FOR EACH ROW EXECUTE FUNCTION {self._TRIGGER}()"
                )
            )
        try:
            yield
        finally:
            with self._engine.begin() as connection:
                connection.execute(text(f"DROP TRIGGER {self._TRIGGER} ON tuf_metadata"))
                connection.execute(text(f"DROP FUNCTION {self._TRIGGER}()"))


@pytest.fixture
def metadata_fault(app: FastAPI) -> MetadataFault:
    """A `MetadataFault` on the test registry's metadata store."""
    return MetadataFault(app.state.registry.tuf, app.state.registry.engine)
