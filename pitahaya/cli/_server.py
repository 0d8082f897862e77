"""Run real servers as child processes on 127.0.0.1 (the demo, end-to-end tests, benchmarks).

One mechanism in three parts: `child_process` starts a command (output appended to a log)
and always stops it on exit (terminate, then kill); `wait_ready` polls a readiness check,
failing fast with the log's tail when the process exits or time runs out; `child_server`
joins them for a server that is ready once an HTTP URL answers 200. `registry_process` is the
registry started through ``pitahaya serve``. The test servers (SeaweedFS, PostgreSQL's
helpers in ``tests/servers.py``) are started the same way. `start_detached` starts a command
that outlives this process (``pitahaya up``), awaited with the same `wait_ready`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NotReady(RuntimeError):
    """A server's process exited or did not answer in time; ``reason`` is one line, the log's tail follows it."""

    def __init__(self, reason: str, log_path: Path) -> None:
        super().__init__(f"{reason}:\n{_tail(log_path)}")
        self.reason = reason
        self.log_path = log_path


def _spawn(
    command: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None, detached: bool
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
        )


def start_detached(
    command: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (its pid is its process group), so it outlives
    this process and a terminal's Ctrl-C; output appended to ``log_path``. Stopping it is the caller's job."""
    return _spawn(command, log_path=log_path, env=env, detached=True)


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
    process = _spawn(command, log_path=log_path, env=env, detached=False)
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
        NotReady: the process exited first, or ``timeout_s`` passed (``what`` names the
            awaited thing; the log's tail is attached).
    """
    wait_all_ready([Awaited(process, ready, what, log_path)], timeout_s=timeout_s, interval_s=interval_s)


@dataclass(frozen=True)
class Awaited:
    """A started server and the check that says it is ready (see `wait_ready` for the fields)."""

    process: subprocess.Popen[bytes]
    ready: Callable[[], bool]
    what: str
    log_path: Path


def wait_all_ready(awaited: Sequence[Awaited], *, timeout_s: float, interval_s: float = 0.2) -> None:
    """`wait_ready` for servers started side by side: one deadline, and the first to exit fails
    at once rather than after the slower ones came up.

    Raises:
        NotReady: for the first server that exited, or the first still not ready at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    pending = list(awaited)
    while True:
        for server in pending:
            if server.process.poll() is not None:
                raise NotReady(f"{server.what}: its process exited with {server.process.returncode}", server.log_path)
        pending = [server for server in pending if not server.ready()]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise NotReady(f"{pending[0].what} not ready within {timeout_s:g}s", pending[0].log_path)
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
        wait_ready(process, lambda: answers(ready_url), what=ready_url, log_path=log_path, timeout_s=startup_timeout_s)
        yield process


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within a second (a health endpoint)."""
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
    settings = {"PITAHAYA_DATA_DIR": str(data_dir), "PITAHAYA_REGISTRY_TOKEN": token, **(env or {})}
    with child_server(
        serve_command(data_dir, port, workers=workers),
        ready_url=f"{url}/healthz",
        log_path=data_dir / "registry.log",
        env=settings,
        startup_timeout_s=startup_timeout_s,
    ):
        yield url


def serve_command(data_dir: Path, port: int, *, workers: int = 1) -> list[str]:
    """``pitahaya serve`` on 127.0.0.1:``port`` through this interpreter (no reliance on PATH)."""
    command = [sys.executable, "-m", "pitahaya.cli.app", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    if workers != 1:
        command += ["--workers", str(workers)]
    return command
