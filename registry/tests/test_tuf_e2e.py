"""End to end: a real ``tuf.ngclient.Updater`` against the registry on a real socket.

This is exactly what a device does: trust the registry's first root, refresh the metadata
chain, then download and verify the release document and the package it names.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tuf.ngclient import Updater

from pitahaya.client_runtime import Release
from pitahaya.client_runtime.package import target_path
from pitahaya.client_runtime.releases import release_target_path
from pitahaya.publisher import RegistryClient

pytestmark = pytest.mark.e2e


def _updater(live_url: str, trusted_root: bytes, tmp_path: Path) -> Updater:
    metadata_dir = tmp_path / "device" / "metadata"
    metadata_dir.mkdir(parents=True)
    return Updater(
        metadata_dir=str(metadata_dir),
        metadata_base_url=f"{live_url}/tuf/metadata/",
        target_base_url=f"{live_url}/tuf/targets/",
        target_dir=str(tmp_path / "device" / "targets"),
        bootstrap=trusted_root,
    )


def test_device_downloads_and_verifies_release_and_package(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes]
) -> None:
    archive_v1, archive_v2 = make_archive(version="1.0.0"), make_archive(version="1.1.0")
    with RegistryClient(live_url, token=token) as registry:
        trusted_root = registry.root_metadata()
        registry.push(archive_v1)
        registry.create_release("watch_time", "1.0.0")
        registry.push(archive_v2)
        registry.create_release("watch_time", "1.1.0", rollout_percent=25)
    # Re-sign every role: the online ones as the server does, then root and top-level targets as
    # an admin does with the offline keys; the device must walk 1.root.json -> 2.root.json.
    assert app.state.registry.tuf.refresh(margin=2.0) == ["registry", "snapshot", "timestamp"]
    assert app.state.registry.tuf.resign_offline(margin=2.0) == ["root", "targets", "snapshot", "timestamp"]

    updater = _updater(live_url, trusted_root, tmp_path)
    updater.refresh()
    assert json.loads((tmp_path / "device" / "metadata" / "root.json").read_bytes())["signed"]["version"] == 2

    release_info = updater.get_targetinfo(release_target_path("watch_time", "stable"))
    assert release_info is not None
    release = Release.from_json(Path(updater.download_target(release_info)).read_bytes())
    assert (release.package_version, release.previous_version, release.rollout_percent) == ("1.1.0", "1.0.0", 25.0)
    for version, archive in (("1.1.0", archive_v2), ("1.0.0", archive_v1)):
        package_info = updater.get_targetinfo(target_path("watch_time", version))
        assert package_info is not None
        assert Path(updater.download_target(package_info)).read_bytes() == archive


def test_targets_are_immutable_and_unknown_names_404(
    live_url: str, token: str, make_archive: Callable[..., bytes]
) -> None:
    with RegistryClient(live_url, token=token) as registry:
        package = registry.push(make_archive())
    name = f"packages/watch_time/{package['sha256']}.watch_time-1.0.0.tar.xz"
    with httpx.Client(base_url=live_url) as http:
        response = http.get(f"/tuf/targets/{name}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["etag"] == f'"{package["sha256"]}"'
        assert http.get(f"/tuf/targets/{name}", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
        assert http.get("/tuf/metadata/timestamp.json").headers["cache-control"] == "no-cache"
        wrong_hash = name.replace(package["sha256"], "0" * 64)
        for missing in (wrong_hash, "packages/watch_time/watch_time-1.0.0.tar.xz", "../../keys/root.pem"):
            assert http.get(f"/tuf/targets/{missing}").status_code == 404, missing
        for missing in ("2.root.json", "keys.json", "..%2Fkeys%2Froot.pem", "x.targets.json"):
            assert http.get(f"/tuf/metadata/{missing}").status_code == 404, missing
