"""Run a real registry process on 127.0.0.1 for the demo (and end-to-end tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def registry_process(data_dir: Path, token: str, *, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Start ``pitahaya serve`` in a child process; yield its base URL; stop it on exit.

    Raises:
        RuntimeError: the registry did not answer ``/healthz`` in time (its log is attached).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "registry.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PITAHAYA_DATA_DIR": str(data_dir), "PITAHAYA_REGISTRY_TOKEN": token}
    command = [sys.executable, "-m", "pitahaya.cli.app", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"registry exited with {process.returncode}:\n{log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"registry did not start in {startup_timeout_s}s:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
