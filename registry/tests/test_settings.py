"""Settings come from ``PITAHAYA_*`` variables and refuse to start without a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitahaya.registry import ConfigurationError, load_settings
from pitahaya.registry.server import settings_environment


def test_missing_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITAHAYA_REGISTRY_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="PITAHAYA_REGISTRY_TOKEN"):
        load_settings()


def test_short_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", "changethis")
    with pytest.raises(ConfigurationError, match="at least 16"):
        load_settings()


def test_locations_default_under_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", "t" * 32)
    monkeypatch.setenv("PITAHAYA_DATA_DIR", str(tmp_path))
    settings = load_settings()

    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/registry/registry.db"
    assert settings.resolved_blob_dir == tmp_path / "registry" / "blobs"
    assert settings.resolved_tuf_dir == tmp_path / "registry" / "tuf"
    assert not (tmp_path / "registry").exists()  # nothing is created before create_app


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PITAHAYA_REGISTRY_TOKEN", "t" * 32)
    monkeypatch.setenv("PITAHAYA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PITAHAYA_MAX_UPLOAD_BYTES", "1234")
    settings = load_settings()
    for name, value in settings_environment(settings).items():
        monkeypatch.setenv(name, value)

    assert load_settings() == settings
