"""Session fixtures for end-to-end tests: one small real pipeline run, real registry processes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitahaya.cli._common import DEFAULT_SCENE
from pitahaya.cli._server import registry_process
from pitahaya.client_runtime import Scene
from pitahaya.packaging import build_package
from pitahaya.training import GeneratorConfig, TrainConfig, generate_views, train, write_events

from e2e_support import LiveRegistry, Pipeline
from servers import S3Endpoint, postgres_url_fixture, s3_endpoint_fixture

SMALL_VIEWS = 20_000


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    work = tmp_path_factory.mktemp("pipeline")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    views = generate_views(GeneratorConfig(n_views=SMALL_VIEWS, n_users=120, seed=11))
    events = work / "events.csv.gz"
    write_events(events, views)
    trained = train(
        TrainConfig(scene=DEFAULT_SCENE, tracking_uri=uri, events=events, artifact_location=work / "artifacts", seed=11)
    )
    scene = Scene.load(DEFAULT_SCENE)
    built = build_package(
        run_id=trained.run_id, scene=scene, version="1.0.0", tracking_uri=uri, out_dir=work / "packages"
    )
    return Pipeline(scene=scene, views=views, trained=trained, built=built, tracking_uri=uri)


@pytest.fixture
def live_registry(tmp_path: Path) -> Iterator[LiveRegistry]:
    """A fresh registry process on 127.0.0.1 with its own data dir (not forwarding to MLflow:
    the demo's test and ``registry/tests/test_telemetry.py`` cover that)."""
    token = secrets.token_urlsafe(24)
    data_dir = tmp_path / "registry-data"
    with registry_process(data_dir, token, env={"PITAHAYA_MLFLOW_FORWARDING": "false"}) as url:
        yield LiveRegistry(url=url, token=token, data_dir=data_dir)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the session."""
    yield from s3_endpoint_fixture(tmp_path_factory)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for the session (SQLAlchemy URL)."""
    yield from postgres_url_fixture()
