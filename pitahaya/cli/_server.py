"""Run real servers as child processes on 127.0.0.1 (the demo, end-to-end tests, benchmarks).

`child_server` is the one mechanism: start a command, wait until an HTTP URL answers, and
always stop the process on exit (terminate, then kill). `registry_process` is the registry
started through ``pitahaya serve``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(list(command), env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} not ready within {startup_timeout_s}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
