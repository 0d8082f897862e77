"""Property of the registry's releases: whatever is released, at whatever percent, targeting or pause,
every device runs the new version or what it ran before, never the default policy.

test_rollout_layers.py pins the cases of the issue; this draws the sequences of releases, each
through the API and the signed document a device reads.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import Release

SCENE = "/api/v1/scenes/watch_time"
VERSIONS = ("0.9.0", "1.0.0", "1.1.0", "1.2.0")
PLATFORMS = ("android", "ios", "web")
#: Devices standing for the fleet, each with a platform and a host-app version.
FLEET = [(f"device-{i}", PLATFORMS[i % 3], f"{i % 4}.0.0") for i in range(300)]

targetings = st.fixed_dictionaries(
    {},
    optional={
        "platforms": st.lists(st.sampled_from(PLATFORMS), min_size=1, unique=True),
        "app_version_min": st.sampled_from(["1.0.0", "2.0.0"]),
    },
)
releases = st.fixed_dictionaries(
    {"version": st.sampled_from(VERSIONS), "rollout_percent": st.floats(0.0, 100.0)},
    optional={"targeting": targetings, "paused": st.booleans()},
)


def _release(client: TestClient, auth: dict[str, str], body: dict[str, object]) -> dict[str, str | None]:
    """Release ``body`` and return what each device of `FLEET` runs under the signed document."""
    response = client.post(f"{SCENE}/releases", json=body, headers=auth)
    assert response.status_code == 201, response.text
    sha256, channel = response.json()["sha256"], response.json()["channel"]
    document = Release.from_json(client.get(f"/tuf/targets/releases/watch_time/{sha256}.{channel}.json").content)
    return {d: document.version_for(d, platform=p, app_version=a) for d, p, a in FLEET}


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(releases, min_size=2, max_size=4))
def test_a_release_leaves_every_device_it_does_not_reach_on_what_it_ran(
    client: TestClient, auth: dict[str, str], make_archive: Callable[..., bytes], steps: list[dict[str, object]]
) -> None:
    for version in VERSIONS:  # once per test: later examples find them published (409)
        client.post("/api/v1/packages", content=make_archive(version=version), headers=auth)
    before = _release(client, auth, {"version": "0.9.0"})  # every device on a package
    for body in steps:
        now = _release(client, auth, body)
        for device, _, _ in FLEET:
            assert now[device] in (body["version"], before[device])
            if body.get("paused"):
                assert now[device] == before[device]
        before = now
