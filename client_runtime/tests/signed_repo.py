"""A small signed TUF repository in memory, for attacks a real registry would never stage.

Modelled on python-tuf's ``tests/repository_simulator.py``: one ed25519 key per top-level
role, ``consistent_snapshot`` off, files kept as bytes under the paths a registry serves
(``metadata/<role>.json``, ``metadata/<n>.root.json``, ``targets/<path>``). `MemoryFetcher`
serves them through ngclient's fetcher seam (no sockets); `serve_http` puts them behind a
real HTTP server on 127.0.0.1 (for the SIGKILL test, which needs another process).

Every `publish` signs a new targets, snapshot and timestamp version, and keeps the served
files of each publication, so a test can replay an older one (rollback) or re-sign with a
past expiry (freeze).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import MetaFile, Metadata, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import FetcherInterface

from pitahaya.client_runtime import Release, release_target_path, target_path

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)


class SignedRepo:
    """An in-memory TUF repository with one signing key per role."""

    def __init__(self) -> None:
        self.signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
        root = Root(expires=expires, consistent_snapshot=False)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=expires))
        self.snapshot = Metadata(Snapshot(expires=expires))
        self.timestamp = Metadata(Timestamp(expires=expires))
        self.files: dict[str, bytes] = {}
        self.served: dict[str, bytes] = {}
        self.publications: list[dict[str, bytes]] = []
        self.root.sign(self.signers[Root.type])
        self._initial = True

    @property
    def root_bytes(self) -> bytes:
        return self.root.to_bytes(JSONSerializer())

    def add_target(self, path: str, data: bytes) -> None:
        self.targets.signed.targets[path] = TargetFile.from_data(path, data)
        self.files[path] = data

    def add_release(self, version: str, *, release_id: int, channel: str = "stable", **fields: Any) -> None:
        release = Release("watch_time", channel, release_id, version, **fields)
        self.add_target(release_target_path("watch_time", channel), release.to_json())

    def add_package(self, version: str, archive: bytes) -> None:
        self.add_target(target_path("watch_time", version), archive)

    def publish(self, *, timestamp_expires: datetime | None = None) -> None:
        """Sign new targets, snapshot and timestamp versions and serve them."""
        if not self._initial:
            self.targets.signed.version += 1
            self.snapshot.signed.version += 1
            self.timestamp.signed.version += 1
        self._initial = False
        self.snapshot.signed.meta["targets.json"] = MetaFile(self.targets.signed.version)
        self.timestamp.signed.snapshot_meta = MetaFile(self.snapshot.signed.version)
        if timestamp_expires is not None:
            self.timestamp.signed.expires = timestamp_expires.replace(microsecond=0)
        for md, role in (
            (self.targets, Targets.type),
            (self.snapshot, Snapshot.type),
            (self.timestamp, Timestamp.type),
        ):
            md.signatures.clear()
            md.sign(self.signers[role])
        served = {
            "metadata/1.root.json": self.root_bytes,
            "metadata/root.json": self.root_bytes,
            "metadata/targets.json": self.targets.to_bytes(JSONSerializer()),
            "metadata/snapshot.json": self.snapshot.to_bytes(JSONSerializer()),
            "metadata/timestamp.json": self.timestamp.to_bytes(JSONSerializer()),
        }
        served.update({f"targets/{path}": data for path, data in self.files.items()})
        self.publications.append(served)
        self.served = served

    def replay(self, publication: int) -> None:
        """Serve an earlier publication's files again (a rollback / replay attack)."""
        self.served = self.publications[publication]


class MemoryFetcher(FetcherInterface):
    """ngclient's network seam over a `SignedRepo` (URLs end in ``/tuf/<served path>``)."""

    def __init__(self, repo: SignedRepo) -> None:
        self.repo = repo

    def _fetch(self, url: str) -> Iterator[bytes]:
        data = self.repo.served.get(url.split("/tuf/", 1)[1])
        if data is None:
            raise DownloadHTTPError(f"{url} not found", 404)
        return iter([data])


@contextmanager
def serve_http(repo: SignedRepo, *, throttle_over_bytes: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """Serve ``repo`` at ``http://127.0.0.1:<port>/tuf/...``; files larger than
    ``throttle_over_bytes`` trickle out in 64 KiB chunks (a slow network).

    Yields a dict with ``url`` and ``sent`` (bytes of throttled files sent so far).
    """
    state: dict[str, Any] = {"sent": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            data = repo.served.get(self.path.removeprefix("/tuf/"))
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if len(data) <= throttle_over_bytes:
                self.wfile.write(data)
                return
            try:
                for start in range(0, len(data), 65536):
                    self.wfile.write(data[start : start + 65536])
                    state["sent"] += 65536
                    time.sleep(0.02)
            except OSError:  # the client went away (killed)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
