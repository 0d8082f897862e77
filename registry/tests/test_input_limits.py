"""Deep, huge and non-finite input gets a 4xx that says why, never a 500, over real HTTP.

Each test drives a real uvicorn serving the registry (``live_url``) on both storage backends.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings as hypothesis_settings
from hypothesis import strategies as st

from pitahaya.client_runtime import build_archive, read_package
from pitahaya.client_runtime.package import MAX_MANIFEST_BYTES
from pitahaya.registry import Settings

from raw_archives import archive_with_manifest, nested, with_member

RELEASES = "/api/v1/scenes/watch_time/releases"


@pytest.fixture
def http(live_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, headers=auth, timeout=60) as client:
        yield client


@pytest.fixture
def pushed(http: httpx.Client, make_archive: Callable[..., bytes]) -> None:
    assert http.post("/api/v1/packages", content=make_archive()).status_code == 201


def _manifest_and_files(archive: bytes) -> tuple[bytes, dict[str, bytes]]:
    package = read_package(archive)
    return package.manifest.to_json(), package.files


@pytest.mark.parametrize("depth", [1_000, 200_000])
def test_a_manifest_nested_deeply_is_refused_with_422(
    http: httpx.Client, make_archive: Callable[..., bytes], depth: int
) -> None:
    manifest, files = _manifest_and_files(make_archive())
    response = http.post(
        "/api/v1/packages", content=archive_with_manifest(with_member(manifest, "x", nested(depth)), files)
    )
    assert response.status_code == 422 and "deeper than 64 levels" in response.json()["detail"]
    assert http.get("/api/v1/packages").json() == []


def test_a_manifest_over_the_registry_limit_is_413(
    http: httpx.Client, settings: Settings, make_archive: Callable[..., bytes]
) -> None:
    package = read_package(make_archive())
    padded = dataclasses.replace(package.manifest, policy={"pad": " " * settings.max_manifest_bytes})
    archive = build_archive(padded, package.files)
    assert len(archive) < 16 * 1024  # xz: a few KB uploaded, a manifest of hundreds of KB inside
    response = http.post("/api/v1/packages", content=archive)
    assert response.status_code == 413 and "PITAHAYA_MAX_MANIFEST_BYTES" in response.json()["detail"]
    assert http.get("/api/v1/packages").json() == []


def test_a_manifest_over_the_format_limit_is_422(http: httpx.Client, make_archive: Callable[..., bytes]) -> None:
    manifest, files = _manifest_and_files(make_archive())
    padded = archive_with_manifest(with_member(manifest, "pad", b'"' + b" " * MAX_MANIFEST_BYTES + b'"'), files)
    response = http.post("/api/v1/packages", content=padded)
    assert response.status_code == 422 and "more than the format's" in response.json()["detail"]


def test_a_manifest_holding_nan_is_refused_with_422(http: httpx.Client, make_archive: Callable[..., bytes]) -> None:
    package = read_package(make_archive())
    manifest = dataclasses.replace(package.manifest, metrics={"mae": math.nan})
    response = http.post("/api/v1/packages", content=build_archive(manifest, package.files))
    assert response.status_code == 422 and "NaN" in response.json()["detail"]


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(percent=st.floats(allow_nan=True, allow_infinity=True))
@example(percent=math.nan)
@example(percent=math.inf)
@example(percent=-math.inf)
def test_any_rollout_percent_is_accepted_in_range_and_422_otherwise(
    http: httpx.Client, pushed: None, percent: float
) -> None:
    body = json.dumps({"version": "1.0.0", "rollout_percent": percent})  # NaN / Infinity tokens as sent
    response = http.post(RELEASES, content=body, headers={"Content-Type": "application/json"})
    expected = 201 if 0.0 <= percent <= 100.0 else 422
    assert response.status_code == expected, response.text
    if expected == 422:
        assert response.json()["detail"][0]["loc"] == ["body", "rollout_percent"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309"])
def test_non_finite_numbers_in_widen_and_telemetry_are_422(http: httpx.Client, pushed: None, literal: bytes) -> None:
    assert http.post(RELEASES, json={"version": "1.0.0", "rollout_percent": 10}).status_code == 201
    widen = http.post(
        "/api/v1/scenes/watch_time/channels/stable/widen",
        content=b'{"rollout_percent": ' + literal + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert widen.status_code == 422, widen.text
    window = (
        b'{"minute": "2030-01-01T00:00:00Z", "package_version": "1.0.0", "inferences": 1, "successes": 1, '
        b'"abs_error_sum_s": ' + literal + b"}"
    )
    report = (
        b'{"device_id": "d", "scene": "watch_time", "sent_at": "2030-01-01T00:01:00Z", "windows": [' + window + b"]}"
    )
    telemetry = http.post("/api/v1/telemetry", content=report, headers={"Content-Type": "application/json"})
    assert telemetry.status_code == 422, telemetry.text


def test_a_json_body_over_the_limit_is_413_declared_or_chunked(http: httpx.Client, settings: Settings) -> None:
    body = b'{"version": "1.0.0", "pad": "' + b" " * settings.max_json_body_bytes + b'"}'
    declared = http.post(RELEASES, content=body, headers={"Content-Type": "application/json"})
    chunked = http.post(
        RELEASES,
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Content-Type": "application/json"},
    )
    for response in (declared, chunked):
        assert response.status_code == 413 and "PITAHAYA_MAX_JSON_BODY_BYTES" in response.json()["detail"]


def test_a_json_body_nested_deeply_is_400(http: httpx.Client) -> None:
    response = http.post(RELEASES, content=nested(200_000), headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
