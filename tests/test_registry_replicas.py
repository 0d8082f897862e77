"""Two registry replicas that share no disk serve one repository.

Each replica is a real ``pitahaya serve`` process with its own data dir; they share a real
PostgreSQL database (rows *and* the signed TUF metadata, ``PITAHAYA_TUF_STORAGE=database``), a
real S3-compatible server (SeaweedFS) for the blobs, and the online keys, created once by
``pitahaya keys init`` against that database and copied into each replica as a Kubernetes
Secret would be mounted. While two publishers push and release through both replicas at once, a device whose
every request alternates between them (timestamp from one, snapshot from the other, ...) must
never fail a TUF check, and every package it installs must verify.

Shared rate limits: with ``PITAHAYA_RATE_LIMIT_STORAGE_URI`` on a real Redis server, a client
address over its limit is refused by whichever replica it reaches next.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tuf.ngclient import FetcherInterface, Urllib3Fetcher
from typer.testing import CliRunner

from pitahaya.cli._server import registry_process
from pitahaya.cli.app import app as cli
from pitahaya.client_runtime import PackageUpdater, ReleaseError, build_archive, read_package
from pitahaya.publisher import RegistryClient, RegistryRejected

from e2e_support import Pipeline
from servers import S3Endpoint, redis_url_fixture

pytestmark = pytest.mark.e2e

#: Versions each of the two publishers pushes and releases (through alternating replicas).
VERSIONS_PER_PUBLISHER = 3


class AlternatingFetcher(FetcherInterface):
    """A device behind a load balancer: each request goes to the next replica in turn."""

    def __init__(self, replicas: list[str]) -> None:
        self._next = itertools.cycle([urlsplit(url).netloc for url in replicas])
        self._lock = threading.Lock()
        self._fetcher = Urllib3Fetcher()
        self.requests = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        with self._lock:
            netloc = next(self._next)
            self.requests += 1
        return self._fetcher._fetch(urlunsplit(urlsplit(url)._replace(netloc=netloc)))


@pytest.fixture
def shared_store(postgres_url: str, s3_endpoint: S3Endpoint) -> Iterator[dict[str, str]]:
    """The ``PITAHAYA_*`` settings every replica shares: a fresh database and bucket."""
    name = f"replicas_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield {
        "PITAHAYA_REGISTRY_TOKEN": secrets.token_urlsafe(24),
        "PITAHAYA_DATABASE_URL": make_url(postgres_url).set(database=name).render_as_string(hide_password=False),
        "PITAHAYA_TUF_STORAGE": "database",
        "PITAHAYA_S3_BUCKET": f"replicas-{uuid.uuid4().hex[:12]}",
        "PITAHAYA_S3_ENDPOINT_URL": s3_endpoint.endpoint_url,
        "PITAHAYA_S3_REGION": s3_endpoint.region,
        "PITAHAYA_S3_ACCESS_KEY_ID": s3_endpoint.access_key,
        "PITAHAYA_S3_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
        "PITAHAYA_MLFLOW_FORWARDING": "false",
    }
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@contextmanager
def replicas(env: dict[str, str], tmp_path: Path, count: int = 2) -> Iterator[list[str]]:
    """``pitahaya keys init`` once against the shared database (an admin, before the first
    deployment), then ``count`` replicas, each with its own data dir holding a copy of the online
    keys only (the mounted Secret); yields their URLs."""
    admin_dir = tmp_path / "admin"
    initialized = CliRunner().invoke(
        cli, ["keys", "init", "--data-dir", str(admin_dir)], env={**env, "PITAHAYA_DATA_DIR": str(admin_dir)}
    )
    assert initialized.exit_code == 0, initialized.output
    online_keys = admin_dir / "registry" / "tuf" / "keys"
    assert not (admin_dir / "registry" / "tuf" / "metadata").exists()  # the metadata is in the database
    with ExitStack() as stack:
        urls = []
        for index in range(count):
            data_dir = tmp_path / f"replica-{index}"
            shutil.copytree(online_keys, data_dir / "registry" / "tuf" / "keys")  # the mounted Secret
            urls.append(stack.enter_context(registry_process(data_dir, env["PITAHAYA_REGISTRY_TOKEN"], env=env)))
        yield urls


def test_a_device_polling_two_replicas_during_pushes_and_releases_always_verifies(
    pipeline: Pipeline, shared_store: dict[str, str], tmp_path: Path
) -> None:
    package = read_package(pipeline.built.path.read_bytes())
    archives = {  # the trained package re-versioned: faster than running the packager again
        f"1.{n}.0": build_archive(dataclasses.replace(package.manifest, version=f"1.{n}.0"), package.files)
        for n in range(1, 2 * VERSIONS_PER_PUBLISHER + 1)
    }
    with replicas(shared_store, tmp_path) as urls:
        secret = shared_store["PITAHAYA_REGISTRY_TOKEN"]
        admin = RegistryClient(urls[0], token=secret)
        device = PackageUpdater(
            urls[0],
            "watch_time",
            "device-7",
            tmp_path / "device",
            trusted_root=admin.root_metadata(),
            fetcher=(fetcher := AlternatingFetcher(urls)),
        )
        pushed: dict[str, str] = {}
        failures: list[BaseException] = []

        def publish(first: int, own: str, other: str) -> None:
            """Push through one replica and release through the other, version after version."""
            try:
                with RegistryClient(own, token=secret) as pusher, RegistryClient(other, token=secret) as releaser:
                    for n in range(first, 2 * VERSIONS_PER_PUBLISHER + 1, 2):
                        version = f"1.{n}.0"
                        pushed[version] = pusher.push(archives[version])["sha256"]
                        releaser.create_release("watch_time", version)
            except BaseException as e:  # reported by the main thread
                failures.append(e)

        publishers = [
            threading.Thread(target=publish, args=(1, urls[0], urls[1])),
            threading.Thread(target=publish, args=(2, urls[1], urls[0])),
        ]
        for thread in publishers:
            thread.start()
        seen: list[str | None] = []
        while any(thread.is_alive() for thread in publishers) or not seen:
            try:
                check = device.check()
            except ReleaseError as e:
                if "no release" in str(e):  # before the first release: nothing to install yet
                    continue
                raise
            seen.append(check.version)
            if check.version is not None:
                assert check.sha256 == pushed[check.version]
                assert check.archive_path is not None and check.archive_path.read_bytes() == archives[check.version]
        for thread in publishers:
            thread.join()
        assert failures == []

        final = device.check()  # after the last release, from wherever it lands
        assert final.version in pushed and final.archive_path is not None
        assert len(pushed) == 2 * VERSIONS_PER_PUBLISHER
        assert len(set(seen) - {None}) >= 2  # it polled while releases changed (31 checks, 6 versions seen here)
        assert fetcher.requests > 10
        # One version chain: both replicas serve the same bytes for every name.
        served = [httpx.get(f"{url}/tuf/metadata/timestamp.json").content for url in urls]
        assert served[0] == served[1]
        snapshot_versions = httpx.get(f"{urls[0]}/tuf/metadata/timestamp.json").json()["signed"]["meta"]
        newest = snapshot_versions["snapshot.json"]["version"]
        for version in range(1, newest + 1):
            bodies = {httpx.get(f"{url}/tuf/metadata/{version}.snapshot.json").content for url in urls}
            assert len(bodies) == 1, f"replicas disagree on {version}.snapshot.json"
        registry_role = httpx.get(f"{urls[1]}/tuf/metadata/{newest}.snapshot.json").json()["signed"]["meta"]
        online = httpx.get(f"{urls[1]}/tuf/metadata/{registry_role['registry.json']['version']}.registry.json").json()
        assert {f"packages/watch_time/watch_time-{v}.tar.xz" for v in pushed} <= set(online["signed"]["targets"])
        for index in range(2):
            assert not (tmp_path / f"replica-{index}" / "registry" / "tuf" / "metadata").exists()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server on 127.0.0.1 for this module."""
    yield from redis_url_fixture(tmp_path_factory)


@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_rate_limits_are_shared_by_the_replicas_through_redis(
    storage: str, redis_url: str, shared_store: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **shared_store,
        "PITAHAYA_RATE_LIMIT_PER_IP": "6/minute",
        "PITAHAYA_RATE_LIMIT_STORAGE_URI": redis_url if storage == "redis" else "memory://",
    }
    with replicas(env, tmp_path) as urls:
        token = env["PITAHAYA_REGISTRY_TOKEN"]
        statuses = []
        for url in urls * 4:  # 8 calls from one address, alternating replicas
            try:
                with RegistryClient(url, token=token) as client:
                    client.list_packages()
                statuses.append(200)
            except RegistryRejected as e:
                statuses.append(e.status_code)
    if storage == "redis":  # one count across both replicas: the 7th call is refused
        assert statuses == [200] * 6 + [429] * 2
    else:  # the control: each replica counts alone, so 8 calls pass a limit of 6
        assert statuses == [200] * 8
