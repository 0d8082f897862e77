"""Operations: readiness, request ids in responses and JSON logs, settings from a TOML file."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pitahaya.registry import ConfigurationError, load_settings
from pitahaya.registry.observability import JsonFormatter, request_id_var


def test_readyz_checks_database_blobs_and_keys(app: FastAPI, client: TestClient) -> None:
    assert client.get("/readyz").json() == {"database": "ok", "blobs": "ok", "tuf": "ok"}

    (app.state.registry.tuf.keys.keys_dir / "snapshot.pem").unlink()
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["blobs"] == "ok"
    assert "snapshot" in body["tuf"]


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    made = client.get("/healthz")
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 65})

    assert given.headers["X-Request-ID"] == "abc-123"
    assert len(made.headers["X-Request-ID"]) == 32
    assert hostile.headers["X-Request-ID"] != "x" * 65


def test_json_log_lines_carry_the_request_id_and_extra_fields() -> None:
    record = logging.LogRecord("pitahaya.registry.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.status = 200
    token = request_id_var.set("req-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)

    assert line["message"] == "GET /x" and line["request_id"] == "req-1" and line["status"] == 200
    assert line["level"] == "INFO" and line["time"].endswith("Z")


def test_settings_come_from_a_toml_file_and_env_overrides_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "registry.toml"
    config.write_text('registry_token = "from-the-file-0123456789"\ns3_bucket = "packages"\nmax_upload_bytes = 1000\n')
    monkeypatch.setenv("PITAHAYA_CONFIG_FILE", str(config))
    monkeypatch.delenv("PITAHAYA_REGISTRY_TOKEN", raising=False)
    monkeypatch.setenv("PITAHAYA_MAX_UPLOAD_BYTES", "2000")

    settings = load_settings()

    assert settings.registry_token.get_secret_value() == "from-the-file-0123456789"
    assert settings.s3_bucket == "packages" and settings.max_upload_bytes == 2000


def test_a_missing_config_file_or_bad_rate_limit_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", "t" * 32)
    monkeypatch.setenv("PITAHAYA_CONFIG_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigurationError, match="absent.toml"):
        load_settings()
    monkeypatch.delenv("PITAHAYA_CONFIG_FILE")
    monkeypatch.setenv("PITAHAYA_RATE_LIMIT_PER_IP", "lots")
    with pytest.raises(ConfigurationError, match="PITAHAYA_RATE_LIMIT_PER_IP"):
        load_settings()


def test_metadata_fast_path_answers_like_the_route_with_request_ids_and_metrics(client: TestClient) -> None:
    first = client.get("/tuf/metadata/timestamp.json", headers={"X-Request-ID": "poll-1"})
    assert first.status_code == 200 and first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Request-ID"] == "poll-1" and int(first.headers["Content-Length"]) == len(first.content)
    etag = first.headers["ETag"]
    assert etag == f'"{hashlib.sha256(first.content).hexdigest()}"'
    again = client.get("/tuf/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert again.headers["Cache-Control"] == "no-cache" and "X-Request-ID" in again.headers
    assert client.get("/tuf/metadata/1.root.json").headers["Cache-Control"].endswith("immutable")
    missing = client.get("/tuf/metadata/99.root.json")  # handed on: the app's own 404 body
    assert missing.status_code == 404 and "99.root.json" in missing.json()["detail"]
    assert client.post("/tuf/metadata/timestamp.json").status_code == 405
    text = client.get("/metrics").text
    assert 'route="/tuf/metadata/{name}",status="304"' in text and 'route="/tuf/metadata/{name}",status="200"' in text
