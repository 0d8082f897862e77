"""The registry as ops run it: real uvicorn processes on 127.0.0.1, on both storage backends.

- A registry killed with SIGKILL in the middle of a push leaves no visible package; after a
  restart the same version pushes fine (SQLite + local blobs, and PostgreSQL + SeaweedFS S3).
- Pause, resume, rollback and the kill switch reach a real `Runtime` on its next refresh.
- schemathesis, driven by the registry's own OpenAPI document, finds no failure under its
  default checks (no 5xx, statuses and bodies as documented, valid data accepted, invalid
  data refused, `Allow` on 405); `tests/schemathesis.toml` says where a rule no JSON Schema
  can state makes 422 an answer to schema-valid data.
- ``pitahaya registry gc`` removes a blob a crash left behind without a row.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from pitahaya.cli._server import child_server, free_port
from pitahaya.client_runtime import Candidate, Runtime, build_archive, read_package
from pitahaya.publisher import RegistryClient, RegistryRejected

from e2e_support import PATIENT_DEVICE, Pipeline
from servers import S3Endpoint

pytestmark = pytest.mark.e2e

FACTORY = "pitahaya.registry.server:app_from_environment"


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def registry_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """``PITAHAYA_*`` settings of a fresh registry on one storage backend."""
    env = {"PITAHAYA_DATA_DIR": str(tmp_path / "data"), "PITAHAYA_REGISTRY_TOKEN": secrets.token_urlsafe(24)}
    if request.param == "sqlite-local":
        yield env
        return
    server_url: str = request.getfixturevalue("postgres_url")
    s3: S3Endpoint = request.getfixturevalue("s3_endpoint")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    env.update(
        PITAHAYA_DATABASE_URL=make_url(server_url).set(database=name).render_as_string(hide_password=False),
        PITAHAYA_TUF_STORAGE="database",  # the scale-out path: replicas share no disk
        PITAHAYA_S3_BUCKET=f"e2e-{uuid.uuid4().hex[:12]}",
        PITAHAYA_S3_ENDPOINT_URL=s3.endpoint_url,
        PITAHAYA_S3_REGION=s3.region,
        PITAHAYA_S3_ACCESS_KEY_ID=s3.access_key,
        PITAHAYA_S3_SECRET_ACCESS_KEY=s3.secret_key,
    )
    # As a deployment does before its replicas start: a serving replica never creates the repository.
    migrated = subprocess.run(
        [sys.executable, "-m", "pitahaya.cli.app", "registry", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert migrated.returncode == 0, migrated.stderr
    yield env
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@contextmanager
def registry_server(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``uvicorn --factory`` on the registry, as a child process; yields (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", "--factory", FACTORY, "--host", "127.0.0.1", "--port", str(port)]
    with child_server(command, ready_url=f"{url}/readyz", log_path=log, env=env) as process:
        yield url, process


def _signed_target_paths(url: str) -> set[str]:
    """Target paths the registry's online role currently signs (timestamp → snapshot → registry)."""
    timestamp = httpx.get(f"{url}/tuf/metadata/timestamp.json").json()
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = httpx.get(f"{url}/tuf/metadata/{snapshot_version}.snapshot.json").json()
    version = snapshot["signed"]["meta"]["registry.json"]["version"]
    return set(httpx.get(f"{url}/tuf/metadata/{version}.registry.json").json()["signed"]["targets"])


def test_sigkill_during_a_push_leaves_nothing_visible_and_the_push_can_be_redone(
    registry_env: dict[str, str], pipeline: Pipeline, tmp_path: Path
) -> None:
    archive = pipeline.built.path.read_bytes()
    token = registry_env["PITAHAYA_REGISTRY_TOKEN"]
    log = tmp_path / "registry.log"
    with registry_server(registry_env, log) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as upload:
            upload.sendall(
                b"POST /api/v1/packages HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/octet-stream\r\n" + f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            half = archive[: len(archive) // 2]
            for start in range(0, len(half), 4096):  # a slow client: the server is mid-body
                chunk = half[start : start + 4096]
                upload.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL

    with registry_server(registry_env, log) as (url, _process):
        client = RegistryClient(url, token=token)
        assert client.list_packages() == []
        assert not any(path.startswith("packages/") for path in _signed_target_paths(url))
        pushed = client.push(archive)
        assert (pushed["version"], pushed["sha256"]) == ("1.0.0", pipeline.built.sha256)
        assert "packages/watch_time/watch_time-1.0.0.tar.xz" in _signed_target_paths(url)
        target = httpx.get(f"{url}/tuf/targets/packages/watch_time/{pushed['sha256']}.watch_time-1.0.0.tar.xz")
        assert target.status_code == 200 and target.content == archive


@pytest.fixture(scope="module")
def second_version(pipeline: Pipeline) -> bytes:
    """The same trained package, re-versioned as 1.1.0 (a newer version to roll out and back).

    Re-versioning the verified archive is faster than re-running the packager.
    """
    package = read_package(pipeline.built.path.read_bytes())
    return build_archive(dataclasses.replace(package.manifest, version="1.1.0"), package.files)


def test_pause_resume_rollback_and_kill_switch_reach_a_runtime_on_its_next_refresh(
    pipeline: Pipeline, second_version: bytes, tmp_path: Path
) -> None:
    env = {"PITAHAYA_DATA_DIR": str(tmp_path / "data"), "PITAHAYA_REGISTRY_TOKEN": secrets.token_urlsafe(24)}
    with registry_server(env, tmp_path / "registry.log") as (url, _process):
        admin = RegistryClient(url, token=env["PITAHAYA_REGISTRY_TOKEN"])
        publisher = RegistryClient(url, token=admin.create_token("ci", "publisher")["secret"])
        operator = RegistryClient(url, token=admin.create_token("oncall", "operator")["secret"])
        publisher.push(pipeline.built.path.read_bytes())
        publisher.push(second_version)
        with pytest.raises(RegistryRejected) as refused:
            publisher.create_release("watch_time", "1.0.0")
        assert refused.value.status_code == 403

        operator.create_release("watch_time", "1.0.0")
        device = Runtime(
            url,
            "watch_time",
            "device-42",
            cache_dir=tmp_path / "device",
            trusted_root=admin.root_metadata(),
            config=PATIENT_DEVICE,
        )
        steps = [
            (lambda: None, "1.0.0"),
            (lambda: operator.create_release("watch_time", "1.1.0"), "1.1.0"),
            (lambda: operator.pause_release("watch_time"), "1.0.0"),
            (lambda: operator.resume_release("watch_time"), "1.1.0"),
            (lambda: operator.rollback_release("watch_time", "1.0.0"), "1.0.0"),
            (lambda: operator.set_kill_switch("watch_time", True), None),
        ]
        seen = []
        for operate, _expected in steps:
            operate()
            device.refresh()
            seen.append(device.active_version)
        assert seen == [expected for _, expected in steps]
        decision = device.predict([Candidate("v1", 15.0, 2_000_000)])
        assert decision.reason == "kill_switch" and decision.package_version is None

        audit = operator.list_audit_entries()
        assert [(e["actor"], e["action"]) for e in audit[:5]] == [
            ("oncall", "kill_release"),
            ("oncall", "rollback_release"),
            ("oncall", "resume_release"),
            ("oncall", "pause_release"),
            ("oncall", "create_release"),
        ]


def test_schemathesis_default_checks_find_no_failure(tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None, "schemathesis is a dev dependency"
    env = {
        "PITAHAYA_DATA_DIR": str(tmp_path / "data"),
        "PITAHAYA_REGISTRY_TOKEN": secrets.token_urlsafe(24),
        "PITAHAYA_MLFLOW_FORWARDING": "false",  # generated telemetry need not reach MLflow
    }
    with registry_server(env, tmp_path / "registry.log") as (url, _process):
        result = subprocess.run(
            [
                schemathesis,
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{url}/openapi.json",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--request-timeout",
                "20",
                "-H",
                f"Authorization: Bearer {env['PITAHAYA_REGISTRY_TOKEN']}",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=540,
            env={**os.environ, "NO_COLOR": "1"},
            cwd=tmp_path,  # schemathesis writes .schemathesis/ into its working directory
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    assert selected is not None and selected.group(1) == selected.group(2), result.stdout[-3000:]
    assert f"Tested: {selected.group(1)}" in result.stdout  # every operation was exercised


def test_registry_gc_removes_a_blob_left_without_a_row(tmp_path: Path) -> None:
    from pitahaya.cli.app import app
    from pitahaya.registry import Settings
    from pitahaya.registry.blobs import LocalBlobStore

    data_dir = tmp_path / "data"
    env = {"PITAHAYA_DATA_DIR": str(data_dir), "PITAHAYA_REGISTRY_TOKEN": secrets.token_urlsafe(24)}
    blobs = LocalBlobStore(Settings(data_dir=data_dir, registry_token=env["PITAHAYA_REGISTRY_TOKEN"]).resolved_blob_dir)
    orphan = blobs.put(b"written, then the registry died before committing the row")

    result = CliRunner().invoke(app, ["registry", "gc", "--min-age-seconds", "0", "--json"], env=env)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "deleted": [orphan],
        "kept_young": [],
        "deleted_temp_files": [],
        "kept_young_temp_files": [],
        "dry_run": False,
    }
    assert not blobs.exists(orphan)


def test_cli_tokens_and_rollout_operations_against_a_live_registry(pipeline: Pipeline, tmp_path: Path) -> None:
    from pitahaya.cli.app import app

    runner = CliRunner()
    admin = secrets.token_urlsafe(24)
    env = {"PITAHAYA_DATA_DIR": str(tmp_path / "data"), "PITAHAYA_REGISTRY_TOKEN": admin}
    with registry_server(env, tmp_path / "registry.log") as (url, _process):

        def cli(*args: str, token: str = admin) -> str:
            result = runner.invoke(app, [*args, "--registry", url, "--token", token])
            assert result.exit_code == 0, result.output
            return result.stdout

        secret = cli("tokens", "create", "ci", "--role", "publisher").strip().splitlines()[-1]
        operator = json.loads(cli("tokens", "create", "oncall", "--role", "operator", "--json"))["secret"]
        assert secret.startswith("pth_") and secret not in cli("tokens", "list")
        cli("push", str(pipeline.built.path), token=secret)
        refused = runner.invoke(app, ["release", "watch_time", "1.0.0", "--registry", url, "--token", secret])
        assert refused.exit_code == 1 and "403" in refused.output

        released = json.loads(
            cli("release", "watch_time", "1.0.0", "--percent", "10", "--platform", "android", "--json", token=operator)
        )
        assert released["targeting"]["platforms"] == ["android"] and released["created_by"] == "oncall"
        assert json.loads(cli("widen", "watch_time", "50", "--json", token=operator))["rollout_percent"] == 50
        assert json.loads(cli("pause", "watch_time", "--json", token=operator))["paused"] is True
        assert json.loads(cli("kill-switch", "watch_time", "--on", "--json", token=operator))["kill_switch"] is True

        (package,) = json.loads(cli("packages", "--scene", "watch_time", "--json"))["packages"]
        assert (package["version"], package["size_bytes"]) == ("1.0.0", pipeline.built.size_bytes)
        history = json.loads(cli("releases", "watch_time", "--json"))["releases"]
        assert [r["operation"] for r in history] == ["kill", "pause", "widen", "create"]
        entries = json.loads(cli("audit", "--limit", "3", "--json", token=operator))["entries"]
        assert len(entries) == 3 and entries[0]["action"] == "kill_release"
        assert entries[0]["actor"] == "oncall"
        table = cli("releases", "watch_time", "--channel", "stable")
        assert "releases of watch_time (4)" in table and "1.0.0" in table

        cli("tokens", "revoke", "ci")
        revoked = runner.invoke(app, ["push", str(pipeline.built.path), "--registry", url, "--token", secret])
        assert revoked.exit_code == 1 and "401" in revoked.output
        assert "set PITAHAYA_REGISTRY_TOKEN or pass --token" in revoked.output
        no_flag = runner.invoke(app, ["kill-switch", "watch_time", "--registry", url, "--token", operator])
        assert no_flag.exit_code == 1 and "say --on" in no_flag.output and "--off" in no_flag.output
