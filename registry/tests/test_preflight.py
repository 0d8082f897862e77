"""Pre-flight at push: a real registry on 127.0.0.1 refuses, with 422 and the device's reason,
the packages a device would reject, and stores, signs and audits nothing else of them.

Every package is real (a tiny ONNX model and the scene's feature code, `package_factory`),
pushed with a valid token; each hostile one does its harm in ``features.py`` at import. Load
deadlines are small (3 s) to keep the suite fast; no test asserts a duration.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from package_factory import hostile_source
from package_factory import make_archive as real_archive
from pitahaya.registry import Settings, load_settings

LOAD_TIMEOUT_S = 3.0
ENDLESS_LOOP = "while True:\n    pass"


def _settings(tmp_path: Path, token: str, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "registry_token": token,
        "preflight_load_timeout_seconds": LOAD_TIMEOUT_S,
        "preflight_memory_bytes": 256 * 1024 * 1024,
        "log_json": False,
    }
    return Settings(**fields | overrides)


@pytest.fixture
def settings(tmp_path: Path, token: str) -> Settings:
    """Overrides conftest's: pre-flight on, SQLite and local blobs only (storage plays no part here)."""
    return _settings(tmp_path, token)


@pytest.fixture
def http(live_url: str, auth: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, headers=auth, timeout=120) as client:
        yield client


def _push(http: httpx.Client, archive: bytes) -> httpx.Response:
    return http.post("/api/v1/packages", content=archive, headers={"Content-Type": "application/octet-stream"})


def _audit(http: httpx.Client, action: str) -> list[dict[str, Any]]:
    entries = http.get("/api/v1/audit").raise_for_status().json()
    return [entry["detail"] for entry in entries if entry["action"] == action]


def _assert_nothing_stored(http: httpx.Client, settings: Settings) -> None:
    """No row, no blob, no signed target, no staged metadata, no worker folder left behind."""
    assert http.get("/api/v1/packages").json() == []
    assert [p for p in settings.resolved_blob_dir.rglob("*") if p.is_file()] == []
    timestamp = http.get("/tuf/metadata/timestamp.json").json()["signed"]
    snapshot_name = f"{timestamp['meta']['snapshot.json']['version']}.snapshot.json"
    snapshot = http.get(f"/tuf/metadata/{snapshot_name}").json()["signed"]
    for role, meta in snapshot["meta"].items():  # every served targets role, wherever the metadata is stored
        assert "packages/watch_time" not in http.get(f"/tuf/metadata/{meta['version']}.{role}").text, role
    assert list(settings.preflight_dir.iterdir()) == []


def _refuses(http: httpx.Client, settings: Settings, archive: bytes, reason: str) -> dict[str, Any]:
    """Push ``archive``; assert the 422, the audit entry and that nothing was stored; returns the body."""
    response = _push(http, archive)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["reason"] == reason
    assert f"({reason})" in body["detail"]
    (refusal,) = _audit(http, "refuse_package")
    assert (refusal["scene"], refusal["version"], refusal["reason"]) == ("watch_time", "1.0.0", reason)
    assert refusal["message"]
    assert _audit(http, "push_package") == []
    _assert_nothing_stored(http, settings)
    return body


def _at_import(code: str) -> Callable[[Path], bytes]:
    return lambda _tmp: real_archive(feature_source=hostile_source(at_import=code))


REBIND_SELFTEST = (
    "from pitahaya.client_runtime import LoadedPackage\nLoadedPackage.run_selftest = lambda *args, **kwargs: None"
)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        pytest.param(_at_import(ENDLESS_LOOP), "load_timeout", id="endless-loop-at-import"),
        pytest.param(_at_import("raise SystemExit(3)"), "feature_code", id="system-exit-at-import"),
        pytest.param(_at_import("raise KeyboardInterrupt"), "feature_code", id="keyboard-interrupt-at-import"),
        pytest.param(_at_import("import os\nos._exit(7)"), "sandbox_crash", id="os-exit-at-import"),
        pytest.param(
            _at_import("_hoard = []\nwhile True:\n    _hoard.append(bytearray(16 << 20))"),
            "resource_limit",
            id="unbounded-allocation-at-import",
        ),
        pytest.param(lambda _tmp: real_archive(golden_shift=5.0), "self_test", id="wrong-golden-vectors"),
        pytest.param(
            lambda _tmp: real_archive(feature_source=hostile_source(at_import=REBIND_SELFTEST), golden_shift=5.0),
            "self_test",
            id="rebinds-the-self-test-and-ships-wrong-golden-vectors",
        ),
        pytest.param(
            lambda _tmp: real_archive(model=b"not an onnx model"), "model_load", id="model-onnx-runtime-refuses"
        ),
    ],
)
def test_a_package_a_device_would_reject_is_refused_with_its_reason(
    http: httpx.Client, settings: Settings, tmp_path: Path, build: Callable[[Path], bytes], reason: str
) -> None:
    _refuses(http, settings, build(tmp_path), reason)


def test_feature_code_that_writes_outside_its_folder_is_refused_and_writes_nothing(
    http: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    escaped = tmp_path / "escaped.txt"
    archive = real_archive(feature_source=hostile_source(at_import=f"open({str(escaped)!r}, 'w').write('out')"))
    _refuses(http, settings, archive, "feature_code")
    assert not escaped.exists()


def test_the_package_cannot_read_the_servers_files_nor_echo_them(
    http: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    """The sandbox keeps the registry's data (keys, database) out of the worker's reach; and its
    words reach the audit log only, never the publisher, in case a kernel without Landlock lets it read."""
    secret = settings.data_dir / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(value := secrets.token_hex(16))
    archive = real_archive(feature_source=hostile_source(at_import=f"raise ValueError(open({str(secret)!r}).read())"))
    body = _refuses(http, settings, archive, "feature_code")
    assert value not in str(body)
    (refusal,) = _audit(http, "refuse_package")
    assert value not in refusal["message"] and "PermissionError" in refusal["message"]


def test_planner_knobs_no_device_takes_are_refused(http: httpx.Client, settings: Settings) -> None:
    _refuses(http, settings, real_archive(policy={"smoothing": 10**9}), "package_format")


def test_a_duplicate_is_refused_before_its_code_runs(http: httpx.Client) -> None:
    assert _push(http, real_archive(version="1.0.0")).status_code == 201
    # Same version, code that would hang the pre-flight: the cheap 409 comes first.
    hanging = real_archive(version="1.0.0", feature_source=hostile_source(at_import="while True:\n    pass"))
    assert _push(http, hanging).status_code == 409
    assert _audit(http, "refuse_package") == []


def test_a_good_package_passes_and_its_audit_entry_records_the_preflight(
    http: httpx.Client, settings: Settings
) -> None:
    response = _push(http, real_archive())
    assert response.status_code == 201, response.text
    (pushed,) = _audit(http, "push_package")
    assert pushed["preflight"]["outcome"] == "passed"
    assert pushed["preflight"]["seconds"] > 0
    assert _audit(http, "refuse_package") == []
    assert list(settings.preflight_dir.iterdir()) == []


class TestTurnedOff:
    @pytest.fixture
    def settings(self, tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """Read from the environment, as ``pitahaya serve`` does."""
        monkeypatch.setenv("PITAHAYA_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", token)
        monkeypatch.setenv("PITAHAYA_PREFLIGHT_ENABLED", "false")
        return load_settings()

    def test_the_setting_switches_it_off_and_the_audit_says_so(self, http: httpx.Client) -> None:
        response = _push(http, real_archive(golden_shift=5.0))
        assert response.status_code == 201, response.text
        (pushed,) = _audit(http, "push_package")
        assert pushed["preflight"] == {"outcome": "skipped"}


class TestBoundedConcurrency:
    """One slot: a second pre-flight never runs beside the first; it waits, or gets 503."""

    WAIT_S = 0.2

    @pytest.fixture
    def settings(self, tmp_path: Path, token: str, request: pytest.FixtureRequest) -> Settings:
        wait = getattr(request, "param", self.WAIT_S)
        return _settings(tmp_path, token, preflight_concurrency=1, preflight_wait_seconds=wait)

    @staticmethod
    def _workers(settings: Settings) -> int:
        return sum(1 for _ in settings.preflight_dir.iterdir()) if settings.preflight_dir.exists() else 0

    def _while_one_runs(self, http: httpx.Client, settings: Settings, then: Callable[[], Any]) -> tuple[Any, Any]:
        """Push a package that loops at import; once its worker is up, call ``then``."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(_push, http, real_archive(feature_source=hostile_source(at_import=ENDLESS_LOOP)))
            while self._workers(settings) == 0:
                assert not first.done(), first.result().text
                threading.Event().wait(0.01)
            later = then()
            return first.result(), later

    def test_a_push_finding_every_slot_busy_gets_503_with_retry_after(
        self, http: httpx.Client, settings: Settings
    ) -> None:
        def second() -> tuple[httpx.Response, httpx.Response, int]:
            health = http.get("/healthz")  # the event loop is free while a pre-flight runs
            busy = _push(http, real_archive(version="2.0.0"))
            return health, busy, self._workers(settings)

        first, (health, busy, workers_after) = self._while_one_runs(http, settings, second)
        assert health.status_code == 200
        assert busy.status_code == 503, busy.text
        assert int(busy.headers["Retry-After"]) >= 1
        assert workers_after == 1  # the first was still running: the 503 was for want of a slot
        assert first.status_code == 422 and first.json()["reason"] == "load_timeout"
        assert [entry["version"] for entry in _audit(http, "refuse_package")] == ["1.0.0"]

    @pytest.mark.parametrize("settings", [60.0], indirect=True)
    def test_a_push_waits_for_the_slot_and_never_runs_beside_another(
        self, http: httpx.Client, settings: Settings
    ) -> None:
        most, done = 0, threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, self._workers(settings))
                done.wait(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            first, second = self._while_one_runs(http, settings, lambda: _push(http, real_archive(version="2.0.0")))
        finally:
            done.set()
            watcher.join()
        assert first.status_code == 422 and first.json()["reason"] == "load_timeout"
        assert second.status_code == 201, second.text
        assert most == 1
