"""The TUF metadata in the database (``tuf_storage = "database"``) and the publish lock replicas share.

- A poll naming the timestamp a replica just read is answered without a query; any answer with
  a body carries the newest version.
- A serving replica never creates a repository in a shared database (its keys would die with
  its disk); ``migrate`` does.
- A registry switched from files to the database imports its metadata as it is: a device that
  trusted it goes on updating, and publishing continues the same version chain.
- The PostgreSQL advisory lock serializes holders on different connections, and a holder
  killed with SIGKILL releases it with its connection.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from pitahaya.client_runtime import PackageUpdater
from pitahaya.client_runtime.package import target_path
from pitahaya.registry import Settings, create_app
from pitahaya.registry.db import create_engine_for, upgrade_to_head
from pitahaya.registry.errors import ConfigurationError
from pitahaya.registry.locks import AdvisoryLock
from pitahaya.registry.maintenance import migrate
from pitahaya.registry.tuf import TufRepository
from pitahaya.registry.tuf.sql_store import NOT_MODIFIED_FRESHNESS_S, SqlMetadataStore


SCALE_OUT = pytest.mark.parametrize("backend", [pytest.param("postgres-s3", marks=pytest.mark.scale)], indirect=True)


@SCALE_OUT
def test_a_serving_replica_never_creates_a_repository_in_a_shared_database(settings: Settings) -> None:
    shared = settings  # the scale-out backend's settings: the metadata in PostgreSQL
    with pytest.raises(ConfigurationError, match="never creates one.*pitahaya registry migrate"):
        create_app(shared)
    assert not (shared.resolved_tuf_dir / "keys").exists()  # nothing was created

    migrate(shared)
    tuf = create_app(shared).state.registry.tuf
    assert tuf.store.is_initialized() and not (shared.resolved_tuf_dir / "metadata").exists()


def test_sqlite_keeps_its_metadata_in_files(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="needs a PostgreSQL database_url"):
        Settings.model_validate({**settings.model_dump(), "database_url": None, "tuf_storage": "database"})


@SCALE_OUT
def test_a_registry_moved_to_database_storage_keeps_its_chain_and_devices_keep_updating(
    settings: Settings, auth: dict[str, str], make_archive: Callable[..., bytes], tmp_path: Path
) -> None:
    files = settings.model_copy(update={"tuf_storage": "files"})
    with TestClient(create_app(files)) as client:
        assert client.post("/api/v1/packages", content=make_archive(), headers=auth).status_code == 201
        assert _release(client, auth, "1.0.0")
        served = {name: client.get(f"/tuf/metadata/{name}").content for name in ("timestamp.json", "root.json")}
        root = served["root.json"]

    moved = settings.model_copy(update={"tuf_storage": "database"})
    app = create_app(moved)  # imports the files: no `migrate` needed, no new keys
    with TestClient(app) as client:
        device = _device_on(client, tmp_path / "device", root)
        for name, data in served.items():
            assert client.get(f"/tuf/metadata/{name}").content == data
        assert device.check().version == "1.0.0"
        pushed = client.post("/api/v1/packages", content=make_archive(version="1.1.0"), headers=auth)
        assert pushed.status_code == 201, pushed.text
        assert _release(client, auth, "1.1.0")
        assert device.check().version == "1.1.0"
    assert target_path("watch_time", "1.1.0") in app.state.registry.tuf.targets()


def _release(client: TestClient, auth: dict[str, str], version: str) -> bool:
    return client.post("/api/v1/scenes/watch_time/releases", json={"version": version}, headers=auth).is_success


class _ClientFetcher(FetcherInterface):
    """ngclient's fetcher seam over an in-process registry (`TestClient`)."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._client.get(url)
        if response.status_code != 200:
            raise DownloadHTTPError(f"{url}: {response.status_code}", response.status_code)
        return iter([response.content])


def _device_on(client: TestClient, cache: Path, root: bytes) -> PackageUpdater:
    """A device whose TUF requests go to the in-process registry."""
    fetcher = _ClientFetcher(client)
    return PackageUpdater(str(client.base_url), "watch_time", "device-1", cache, trusted_root=root, fetcher=fetcher)


def test_a_poll_naming_the_version_just_read_costs_no_query_and_no_answer_is_older(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'registry.db'}")  # one writer: enough here
    upgrade_to_head(engine)
    publisher = TufRepository(tmp_path / "tuf", database=engine)
    publisher.initialize()
    now = [0.0]
    replica = SqlMetadataStore(engine, clock=lambda: now[0])
    _, first = replica.file("timestamp.json")

    publisher.add_targets({"releases/watch_time/stable.json": b"{}"})  # on another replica, say
    assert replica.recent_digest("timestamp.json") == first  # 304 to a device holding it, no query
    _, newest = replica.file("timestamp.json")  # an answer with a body reads the database: the newest
    assert newest != first and replica.recent_digest("timestamp.json") == newest
    now[0] += NOT_MODIFIED_FRESHNESS_S
    assert replica.recent_digest("timestamp.json") is None  # past the window: ask the database again
    assert replica.recent_digest("1.root.json") is None  # versioned names are immutable: always cached
    engine.dispose()


@pytest.mark.scale
def test_the_advisory_lock_serializes_holders_and_dies_with_a_killed_holder(
    registry_postgres_server: str, tmp_path: Path
) -> None:
    engine = create_engine_for(registry_postgres_server)
    first, second = AdvisoryLock(engine, key=4242), AdvisoryLock(engine, key=4242)
    order: list[str] = []
    held = threading.Event()

    def contender() -> None:
        held.wait()
        with second:
            order.append("second")

    thread = threading.Thread(target=contender)
    thread.start()
    with first:
        held.set()
        thread.join(timeout=1.0)  # it must still be waiting on the lock, whatever the machine's load
        assert thread.is_alive()
        order.append("first")
    thread.join()
    assert order == ["first", "second"]

    # A holder killed while it holds the lock: PostgreSQL drops the lock with its session.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, registry_postgres_server], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with first:
        order.append("after the kill")
    assert order[-1] == "after the kill"
    engine.dispose()


#: Takes the lock in a separate process, says so, then waits to be killed.
_HOLD = """
import sys, time
from pitahaya.registry.db import create_engine_for, upgrade_to_head
from pitahaya.registry.locks import AdvisoryLock
lock = AdvisoryLock(create_engine_for(sys.argv[1]), key=4242)
lock.__enter__()
print("held", flush=True)
time.sleep(600)
"""

