"""Rollout semantics: devices a new release does not reach keep the version they ran.

The issue this pins: releasing 1.1.0 at 20 % while 1.0.0 was at 60 % used to publish
``previous_version: null``, so the other 80 % (devices on 1.0.0 among them) dropped to the
default policy. Each case below goes through the registry's API and the signed document a
device reads, and checks every bucket's decision against what it ran before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.releases import Rollout, Targeting, layered

SCENE = "/api/v1/scenes/watch_time"
#: Device ids standing for the whole fleet (their buckets cover [0, 10000) evenly enough).
FLEET = [f"device-{i}" for i in range(2000)]


@pytest.fixture
def published(client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes]) -> None:
    for version in ("0.9.0", "1.0.0", "1.1.0", "1.2.0"):
        assert client.post("/api/v1/packages", content=make_archive(version=version), headers=auth).status_code == 201


def _post(client: TestClient, auth: dict[str, str], path: str, body: dict[str, Any] | None = None) -> Release:
    response = client.post(f"{SCENE}{path}", json=body, headers=auth)
    assert response.status_code == 201, response.text
    sha256, channel = response.json()["sha256"], response.json()["channel"]
    document = client.get(f"/tuf/targets/releases/watch_time/{sha256}.{channel}.json")
    assert document.status_code == 200
    return Release.from_json(document.content)


def _fleet(release: Release, platform: str | None = None) -> dict[str, str | None]:
    return {device: release.version_for(device, platform=platform) for device in FLEET}


@pytest.mark.usefixtures("published")
def test_a_narrower_release_leaves_every_other_device_on_what_it_ran(
    client: TestClient, auth: dict[str, str]
) -> None:
    stable = _fleet(_post(client, auth, "/releases", {"version": "0.9.0"}))
    at_60 = _fleet(_post(client, auth, "/releases", {"version": "1.0.0", "rollout_percent": 60}))
    at_20 = _post(client, auth, "/releases", {"version": "1.1.0", "rollout_percent": 20})
    now = _fleet(at_20)

    assert set(stable.values()) == {"0.9.0"}
    assert None not in now.values()  # no device is sent to the default policy by a rollout
    for device in FLEET:
        assert now[device] in ("1.1.0", at_60[device])  # either the new release, or what it ran
    shares = {v: sum(1 for x in now.values() if x == v) / len(FLEET) for v in ("1.1.0", "1.0.0", "0.9.0")}
    assert 0.15 < shares["1.1.0"] < 0.25 and 0.35 < shares["1.0.0"] < 0.45 and 0.35 < shares["0.9.0"] < 0.45
    assert at_20.previous_version == "0.9.0"
    assert [r.package_version for r in at_20.earlier] == ["1.0.0"]


@pytest.mark.usefixtures("published")
def test_pausing_widening_and_reverting_keep_the_devices_underneath(client: TestClient, auth: dict[str, str]) -> None:
    _post(client, auth, "/releases", {"version": "0.9.0"})
    before = _fleet(_post(client, auth, "/releases", {"version": "1.0.0", "rollout_percent": 50}))
    canary = _post(
        client, auth, "/releases", {"version": "1.1.0", "rollout_percent": 10, "targeting": {"platforms": ["ios"]}}
    )
    # Outside the targeting, devices keep what they ran (not 0.9.0, not the default policy).
    assert _fleet(canary, platform="android") == before
    assert _fleet(_post(client, auth, "/channels/stable/pause"), platform="ios") == before
    widened = _post(client, auth, "/channels/stable/widen", {"rollout_percent": 30})
    assert widened.paused and [r.package_version for r in widened.earlier] == ["1.0.0"]
    resumed = _fleet(_post(client, auth, "/channels/stable/resume"), platform="ios")
    assert {v for d, v in resumed.items() if v != before[d]} == {"1.1.0"}

    reverted = _post(client, auth, "/channels/stable/revert")
    assert (reverted.package_version, reverted.rollout_percent, reverted.previous_version) == ("1.0.0", 50.0, "0.9.0")
    assert _fleet(reverted, platform="ios") == before
    audit = client.get("/api/v1/audit", headers=auth).json()
    assert audit[0]["action"] == "revert_release"


@pytest.mark.usefixtures("published")
def test_a_full_rollout_becomes_the_floor_and_a_first_release_reverts_to_a_pause(
    client: TestClient, auth: dict[str, str]
) -> None:
    first = _post(client, auth, "/releases", {"version": "1.0.0", "rollout_percent": 30})
    assert first.previous_version is None and first.earlier == ()
    reverted = _post(client, auth, "/channels/stable/revert")
    assert reverted.paused and set(_fleet(reverted).values()) == {None}  # what they had: nothing

    _post(client, auth, "/releases", {"version": "1.0.0"})
    _post(client, auth, "/releases", {"version": "1.1.0", "rollout_percent": 40})
    _post(client, auth, "/releases", {"version": "1.1.0"})
    newest = _post(client, auth, "/releases", {"version": "1.2.0", "rollout_percent": 5})
    assert (newest.previous_version, newest.earlier) == ("1.1.0", ())  # 1.0.0 and the 40 % layer are gone


def test_layered_drops_what_a_newer_rollout_covers_and_stops_at_a_full_one() -> None:
    android = Targeting(platforms=("android",))
    rollouts = [
        Rollout("1.4.0", 30.0),
        Rollout("1.3.0", 20.0),  # covered by 1.4.0's 30 %
        Rollout("1.2.0", 50.0, android),
        Rollout("1.1.0", 40.0),  # 30-40 % still decided here
        Rollout("1.0.0", 100.0),  # everyone: the floor
        Rollout("0.9.0", 70.0),
    ]
    kept, floor = layered(rollouts, "0.1.0")
    assert [r.package_version for r in kept] == ["1.4.0", "1.2.0", "1.1.0"]
    assert floor == "1.0.0"
    assert layered([], "0.1.0") == ((), "0.1.0")
