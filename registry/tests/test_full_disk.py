"""A full disk under the registry never leaves a signed target without its row, nor the reverse.

The registry (SQLite, local blobs, TUF metadata) runs on a real tmpfs of a few MiB served by a
real uvicorn. Each step fills that filesystem until only ``k`` pages are free, for ``k`` from 0
up, and pushes (or releases): the request either succeeds, or fails with 503 having changed
nothing a device can see. Somewhere along the sweep the disk runs out while the blob is
written, while the signed metadata is staged and while SQLite commits; the test checks that
it met the last two. After every request the signed targets equal the committed rows, a
device (python-tuf's ngclient, one metadata cache across the whole test, so a version that
went backwards would be refused) downloads every signed target, and once space is freed the
same request succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tuf.ngclient import Updater

from filesystems import filled, tmpfs_fixture
from pitahaya.registry import Settings

PAGE = 4096
MAX_FREE_PAGES = 96


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    yield from tmpfs_fixture(tmp_path / "disk", 8 * 1024 * 1024)


@pytest.fixture
def settings(disk: Path, token: str) -> Settings:
    """Overrides conftest's: every byte the registry stores lives on the small disk (no pre-flight,
    as there: the archives' models are dummy bytes)."""
    return Settings(data_dir=disk / "data", registry_token=token, log_json=False, preflight_enabled=False)


class Device:
    """A TUF client that follows the registry for the whole test, as a real device would."""

    def __init__(self, http: httpx.Client, folder: Path) -> None:
        self.http = http
        self.folder = folder
        (folder / "metadata").mkdir(parents=True)
        (folder / "targets").mkdir()
        self.root = http.get("/tuf/metadata/1.root.json").content

    def downloads(self, paths: list[str]) -> None:
        updater = Updater(
            metadata_dir=str(self.folder / "metadata"),
            metadata_base_url=f"{self.http.base_url}/tuf/metadata/",
            target_base_url=f"{self.http.base_url}/tuf/targets/",
            target_dir=str(self.folder / "targets"),
            bootstrap=self.root,
        )
        updater.refresh()
        for path in paths:
            info = updater.get_targetinfo(path)
            assert info is not None, f"{path} is signed but the device cannot resolve it"
            updater.download_target(info)  # raises on a 404 or a hash mismatch


def signed_targets(http: httpx.Client) -> dict[str, str]:
    """``{target path: sha256}`` the online role signs now (timestamp → snapshot → registry)."""
    timestamp = http.get("/tuf/metadata/timestamp.json").json()
    snapshot = http.get(f"/tuf/metadata/{timestamp['signed']['meta']['snapshot.json']['version']}.snapshot.json")
    version = snapshot.json()["signed"]["meta"]["registry.json"]["version"]
    targets = http.get(f"/tuf/metadata/{version}.registry.json").json()["signed"]["targets"]
    return {path: target["hashes"]["sha256"] for path, target in targets.items()}


def committed_targets(http: httpx.Client) -> dict[str, str]:
    """``{target path: sha256}`` of every committed package and each channel's live release."""
    targets = {row["target_path"]: row["sha256"] for row in http.get("/api/v1/packages").json()}
    for row in reversed(http.get("/api/v1/scenes/watch_time/releases").json()):  # oldest first: newest wins
        targets[row["target_path"]] = row["sha256"]
    return targets


def assert_consistent(http: httpx.Client, device: Device) -> dict[str, str]:
    signed = signed_targets(http)
    assert signed == committed_targets(http)
    device.downloads(sorted(signed))
    return signed


def sweep(disk: Path, http: httpx.Client, device: Device, request: Callable[[int], httpx.Response]) -> set[str]:
    """Run ``request(step)`` with 0, 1, 2, ... pages free until it succeeds on a full disk.

    After each refusal the same request must succeed once the disk has room. Returns the
    refusal messages, so the caller can check where the disk ran out.
    """
    refusals: set[str] = set()
    for step in range(MAX_FREE_PAGES):
        with filled(disk, leave_bytes=step * PAGE):
            response = request(step)
            assert response.status_code in (201, 503), response.text
            before = assert_consistent(http, device)
        if response.status_code == 201:
            return refusals
        refusals.add(response.json()["detail"])
        retried = request(step)
        assert retried.status_code == 201, retried.text
        assert len(assert_consistent(http, device)) == len(before) + (retried.json()["target_path"] not in before)
    pytest.fail(f"the request never succeeded with up to {MAX_FREE_PAGES} free pages: {refusals}")


def assert_ran_out_while_publishing(refusals: set[str]) -> None:
    assert any("cannot write blob" in message for message in refusals), refusals
    assert any("No space left" in message and "publication" in message for message in refusals), refusals
    assert any("database or disk is full" in message for message in refusals), refusals


def test_a_full_disk_during_push_and_release_leaves_signed_targets_equal_to_committed_rows(
    disk: Path, live_url: str, token: str, make_archive: Callable[..., bytes], tmp_path: Path
) -> None:
    with httpx.Client(base_url=live_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        device = Device(http, tmp_path / "device")
        assert_consistent(http, device)

        def push(step: int) -> httpx.Response:
            return http.post("/api/v1/packages", content=make_archive(version=f"1.0.{step}"))

        assert_ran_out_while_publishing(sweep(disk, http, device, push))

        def release(step: int) -> httpx.Response:
            body = {"version": "1.0.0", "channel": "stable", "rollout_percent": float(step % 100)}
            return http.post("/api/v1/scenes/watch_time/releases", json=body)

        assert_ran_out_while_publishing(sweep(disk, http, device, release))
