"""The release document: parsing (old and new), targeting, pause, kill switch, rollout buckets."""

from __future__ import annotations

import json
import math

import pytest

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.errors import ReleaseError
from pitahaya.client_runtime.releases import Targeting, rollout_bucket

#: A document as the first registry wrote it, before targeting and pause existed.
OLD_DOCUMENT = {
    "scene": "watch_time",
    "channel": "stable",
    "release_id": 3,
    "package_version": "1.1.0",
    "rollout_percent": 50.0,
    "previous_version": "1.0.0",
    "kill_switch": False,
    "created_at": "2026-01-01T00:00:00+00:00",
    "created_by": "publisher",
    "format_version": 1,
}


def _release(**fields: object) -> Release:
    base: dict[str, object] = {"scene": "watch_time", "channel": "stable", "release_id": 1, "package_version": "2.0.0"}
    return Release(**{**base, **fields})  # type: ignore[arg-type]


def test_old_documents_parse_as_everyone_and_not_paused() -> None:
    release = Release.from_json(json.dumps(OLD_DOCUMENT).encode())

    assert release.targeting == Targeting()
    assert release.paused is False
    assert release.version_for("any-device") in {"1.0.0", "1.1.0"}


def test_new_fields_round_trip() -> None:
    release = _release(
        previous_version="1.0.0",
        targeting=Targeting(platforms=("android", "ios"), app_version_min="3.2.0", app_version_max="4.0.0"),
        paused=True,
    )
    raw = json.loads(release.to_json())

    assert raw["targeting"] == {"platforms": ["android", "ios"], "app_version_min": "3.2.0", "app_version_max": "4.0.0"}
    assert raw["paused"] is True
    assert Release.from_json(release.to_json()) == release


@pytest.mark.parametrize(
    "targeting",
    [
        {"platforms": "android"},
        {"platforms": [1]},
        {"app_version_min": "3"},
        {"app_version_min": "2.0.0", "app_version_max": "1.0.0"},
    ],
)
def test_invalid_targeting_is_a_release_error(targeting: dict[str, object]) -> None:
    with pytest.raises(ReleaseError, match="invalid release document"):
        Release.from_json(json.dumps({**OLD_DOCUMENT, "targeting": targeting}).encode())


def test_paused_must_be_a_boolean() -> None:
    with pytest.raises(ReleaseError, match="paused"):
        Release.from_json(json.dumps({**OLD_DOCUMENT, "paused": "false"}).encode())


@pytest.mark.parametrize(
    ("platform", "app_version", "inside"),
    [
        ("android", "3.2.0", True),
        ("android", "4.0.0", True),
        ("android", "3.1.9", False),
        ("android", "4.0.1", False),
        ("ios", "3.5.0", False),
        (None, "3.5.0", False),
        ("android", None, False),
        ("android", "not-a-version", False),
    ],
)
def test_devices_outside_the_targeting_keep_the_previous_version(
    platform: str | None, app_version: str | None, inside: bool
) -> None:
    release = _release(
        previous_version="1.0.0",
        targeting=Targeting(platforms=("android",), app_version_min="3.2.0", app_version_max="4.0.0"),
    )

    expected = "2.0.0" if inside else "1.0.0"
    assert release.version_for("device-1", platform=platform, app_version=app_version) == expected


def test_pause_keeps_every_device_on_the_previous_version_and_kill_switch_wins() -> None:
    devices = [f"device-{i}" for i in range(200)]
    paused = _release(previous_version="1.0.0", paused=True)
    killed = _release(previous_version="1.0.0", paused=True, kill_switch=True)

    assert {paused.version_for(d) for d in devices} == {"1.0.0"}
    assert {killed.version_for(d) for d in devices} == {None}


def test_ten_percent_rollout_is_within_the_99_percent_binomial_interval() -> None:
    n, p = 10_000, 0.10
    release = _release(previous_version="1.0.0", rollout_percent=100 * p)
    chosen = sum(release.version_for(f"sim-device-{i:05d}") == "2.0.0" for i in range(n))

    half_width = 2.5758 * math.sqrt(n * p * (1 - p))  # z(0.995) for a two-sided 99 % interval
    assert n * p - half_width <= chosen <= n * p + half_width


def test_buckets_are_stable_per_scene_and_widening_keeps_devices_in() -> None:
    narrow = _release(previous_version="1.0.0", rollout_percent=10)
    wide = _release(previous_version="1.0.0", rollout_percent=30)
    devices = [f"d{i}" for i in range(2_000)]
    inside_narrow = {d for d in devices if narrow.version_for(d) == "2.0.0"}
    inside_wide = {d for d in devices if wide.version_for(d) == "2.0.0"}

    assert inside_narrow < inside_wide
    assert rollout_bucket("d1", "watch_time") == rollout_bucket("d1", "watch_time")
    assert [rollout_bucket(d, "watch_time") for d in devices[:50]] != [rollout_bucket(d, "other") for d in devices[:50]]
