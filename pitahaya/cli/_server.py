"""Run real servers as child processes on 127.0.0.1 (the demo, end-to-end tests, benchmarks).

One mechanism in three parts: `child_process` starts a command (output appended to a log)
and always stops it on exit (terminate, then kill); `wait_ready` polls a readiness check,
failing fast with the log's tail when the process exits or time runs out; `child_server`
joins them for a server that is ready once an HTTP URL answers 200. `registry_process` is the
registry started through ``pitahaya serve``. The test servers (SeaweedFS, PostgreSQL's
helpers in ``tests/servers.py``) are started the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def child_process(
    command: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    stop_timeout_s: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (output appended to ``log_path``, ``env`` over this process's
    environment); on exit stop it if it still runs: terminate, then kill after ``stop_timeout_s``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command), env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log_path: Path,
    timeout_s: float,
    interval_s: float = 0.2,
) -> None:
    """Poll ``ready()`` until it is true.

    Raises:
        RuntimeError: the process exited first, or ``timeout_s`` passed (``what`` names the
            awaited thing; the log's tail is attached).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: its process exited with {process.returncode}:\n{_tail(log_path)}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout_s}s:\n{_tail(log_path)}")
        time.sleep(interval_s)


@contextmanager
def child_server(
    command: Sequence[str],
    *,
    ready_url: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (output appended to ``log_path``); yield it once ``ready_url`` answers 200.

    Raises:
        RuntimeError: the process exited or did not answer in time (the log's tail is attached).
    """
    with child_process(command, log_path=log_path, env=env) as process:
        wait_ready(process, lambda: _answers(ready_url), what=ready_url, log_path=log_path, timeout_s=startup_timeout_s)
        yield process


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


@contextmanager
def registry_process(
    data_dir: Path,
    token: str,
    *,
    startup_timeout_s: float = 60.0,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """Start ``pitahaya serve`` in a child process; yield its base URL; stop it on exit.

    Args:
        env: Extra ``PITAHAYA_*`` settings of the registry (they override this process's environment).
        workers: Server worker processes.

    Raises:
        RuntimeError: the registry did not answer ``/healthz`` in time (its log is attached).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pitahaya.cli.app", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    if workers != 1:
        command += ["--workers", str(workers)]
    settings = {"PITAHAYA_DATA_DIR": str(data_dir), "PITAHAYA_REGISTRY_TOKEN": token, **(env or {})}
    with child_server(
        command,
        ready_url=f"{url}/healthz",
        log_path=data_dir / "registry.log",
        env=settings,
        startup_timeout_s=startup_timeout_s,
    ):
        yield url
