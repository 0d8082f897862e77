"""``pitahaya up | status | down`` with real detached processes, through the installed entry point.

Each test starts its stack in its own data dir on free ports and always ends with ``down``,
then checks that no process of the stack is left: by the pids the state file recorded and by
any process whose command line names the test's data dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest

PITAHAYA = str(Path(sys.executable).parent / "pitahaya")
#: Bounds, not expectations: MLflow's server takes 15-50 s to start on a loaded 2-core machine.
COMMAND_TIMEOUT_S = 240


def pitahaya(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PITAHAYA, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "250"},  # one line per error, for the assertions on it
    )


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_naming(data_dir: Path) -> list[psutil.Process]:
    """Running processes whose command line names ``data_dir`` (every server of the stack does)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def _stopped_after(path: Path) -> Iterator[Path]:
    """Yield ``path``; then stop its stack, whatever the test asserted."""
    yield path
    pitahaya("down", data_dir=path)
    for process in processes_naming(path):  # a process ``down`` missed: the test has failed already
        process.kill()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield from _stopped_after(tmp_path)


@pytest.fixture
def shared_data_dir() -> Iterator[Path]:
    """A data dir other users can reach: under root PostgreSQL runs as ``postgres``, and pytest's
    temporary folders are private to root."""
    path = Path(tempfile.mkdtemp(prefix="pitahaya-stack-"))
    path.chmod(0o755)
    try:
        yield from _stopped_after(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
def test_up_status_down_with_a_process_killed_behind_ups_back(data_dir: Path) -> None:
    started = pitahaya("up", "--workers", "1", "--with-s3", "--json", data_dir=data_dir)
    assert started.returncode == 0, started.stderr
    services = as_json(started)["services"]
    assert set(services) == {"s3", "mlflow", "registry"}
    recorded = [pid for service in services.values() for pid in service["pids"]]

    status = pitahaya("status", "--json", data_dir=data_dir)
    assert status.returncode == 0, status.stderr
    described = as_json(status)
    assert described["running"] and described["healthy"]
    assert all(service["healthy"] for service in described["services"].values())
    assert httpx.get(f"{services['registry']['url']}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{services['mlflow']['url']}/health", timeout=10).status_code == 200
    # The registry keeps its blobs in the stack's SeaweedFS: it created its bucket there at start.
    s3 = boto3.client("s3", endpoint_url=services["s3"]["url"], aws_access_key_id="pitahaya",
                      aws_secret_access_key="pitahaya-local", region_name="us-east-1")  # fmt: skip
    assert s3.head_bucket(Bucket="packages")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert (data_dir / "stack" / "stack.json").is_file()
    assert Path(services["mlflow"]["log"]) == data_dir.resolve() / "stack" / "mlflow.log"

    again = pitahaya("up", "--json", data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    assert as_json(again)["already_running"]
    assert {name: s["pid"] for name, s in as_json(again)["services"].items()} == {
        name: s["pid"] for name, s in services.items()
    }
    assert "already running" in pitahaya("up", data_dir=data_dir).stderr

    os.kill(services["registry"]["pid"], signal.SIGKILL)
    broken = pitahaya("status", "--json", data_dir=data_dir)
    assert broken.returncode == 1
    assert not as_json(broken)["services"]["registry"]["healthy"]
    assert as_json(broken)["services"]["mlflow"]["healthy"]
    refused = pitahaya("up", data_dir=data_dir)
    assert refused.returncode == 1 and "registry is not healthy" in refused.stderr

    stopped = pitahaya("down", "--json", data_dir=data_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert as_json(stopped)["stopped"] == ["s3", "mlflow", "registry"]
    assert [pid for pid in recorded if running(pid)] == []
    assert processes_naming(data_dir) == []
    assert not (data_dir / "stack" / "stack.json").exists()

    after = pitahaya("status", "--json", data_dir=data_dir)
    assert after.returncode == 0
    assert as_json(after) == {"running": False, "healthy": True, "services": {}}
    assert "nothing runs" in pitahaya("status", data_dir=data_dir).stderr


@pytest.mark.e2e
def test_up_whose_server_cannot_bind_fails_naming_its_log_and_leaves_nothing_running(data_dir: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        failed = pitahaya("up", "--registry-port", str(port), data_dir=data_dir)
    assert failed.returncode == 1
    log = data_dir.resolve() / "stack" / "registry.log"
    assert "error:" in failed.stderr and str(log) in failed.stderr
    assert "address already in use" in log.read_text().lower()
    assert processes_naming(data_dir) == []
    assert not (data_dir / "stack" / "stack.json").exists()
    assert pitahaya("status", data_dir=data_dir).returncode == 0


@pytest.mark.e2e
def test_with_postgres_starts_a_cluster_and_stops_it_when_a_later_server_fails(shared_data_dir: Path) -> None:
    """PostgreSQL comes up (initdb, the server, the registry's database) before the servers that
    use it; when the registry then cannot bind its port, the cluster is stopped with the rest.
    (A whole stack on PostgreSQL would cost another MLflow start-up; the registry's own tests
    run it on PostgreSQL.)"""
    if shutil.which("initdb") is None and not Path("/usr/lib/postgresql").exists():
        pytest.skip("PostgreSQL is not installed")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        failed = pitahaya(
            "up", "--with-postgres", "--registry-port", str(held.getsockname()[1]), data_dir=shared_data_dir
        )
    assert failed.returncode == 1 and "registry.log" in failed.stderr
    assert "ready to accept connections" in (shared_data_dir / "stack" / "postgres.log").read_text()
    assert (shared_data_dir / "stack" / "postgres" / "data" / "PG_VERSION").is_file()
    assert processes_naming(shared_data_dir) == []


def test_a_recorded_pid_now_held_by_another_process_is_reported_down_and_never_signalled(tmp_path: Path) -> None:
    """The state file names a live pid with another start time (the pid was reused after a
    reboot): status reports the service down, and down forgets it without touching that process."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        stack = tmp_path / "stack"
        stack.mkdir()
        service = {
            "name": "registry",
            "url": "http://127.0.0.1:9",
            "health": "http://127.0.0.1:9/healthz",
            "log": str(stack / "registry.log"),
            "started_at": "2026-01-01T00:00:00+00:00",
            "processes": [{"pid": other.pid, "started": 1}],
        }
        (stack / "stack.json").write_text(json.dumps({"services": [service]}))
        status = pitahaya("status", "--json", data_dir=tmp_path)
        assert status.returncode == 1
        assert as_json(status)["services"]["registry"]["alive"] is False
        assert pitahaya("down", data_dir=tmp_path).returncode == 0
        assert other.poll() is None
        assert not (stack / "stack.json").exists()
    finally:
        other.kill()
        other.wait()


def test_with_postgres_names_a_missing_program() -> None:
    """Where a PostgreSQL program is missing, ``up`` says which and how to get it. Asked for a
    program no machine has (this one has PostgreSQL, as CI does), so the check runs everywhere."""
    from pitahaya.cli._stack import StackError, _postgres_bin

    with pytest.raises(StackError, match="--with-postgres needs PostgreSQL's 'pitahaya-no-such-program'"):
        _postgres_bin("pitahaya-no-such-program")
