"""Fixtures: a registry on a fresh data dir, in-process (TestClient) or on a real socket.

Test modules take the archive factory and auth headers as fixtures (``make_archive``,
``auth``), so no helper module has to be importable under ``--import-mode=importlib``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from pitahaya.client_runtime import Manifest, TensorSpec, build_archive
from pitahaya.client_runtime.package import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, file_entry
from pitahaya.registry import Settings, create_app

with warnings.catch_warnings():
    # Starlette nudges towards httpx2; TestClient still works on httpx.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


TOKEN = "test-registry-token-0123456789"


def build_test_archive(scene: str = "watch_time", version: str = "1.0.0") -> bytes:
    """A well-formed package; the model is dummy bytes (the registry never loads it)."""
    payload = {
        MODEL_FILE: f"dummy onnx model {scene} {version}".encode(),
        FEATURES_FILE: b"class Extractor:\n    pass\n",
        SELFTEST_FILE: json.dumps({"cases": []}).encode(),
    }
    manifest = Manifest(
        scene=scene,
        version=version,
        feature_names=("a", "b"),
        input=TensorSpec("input", "float32", (None, 2)),
        output=TensorSpec("output", "float32", (None, 1)),
        files={name: file_entry(data) for name, data in payload.items()},
    )
    return build_archive(manifest, payload)


@pytest.fixture
def make_archive() -> Callable[..., bytes]:
    return build_test_archive


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(tmp_path: Path, token: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", registry_token=token, max_upload_bytes=1024 * 1024)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 in a background thread."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
