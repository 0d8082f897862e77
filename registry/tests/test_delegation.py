"""Scene delegation to publisher keys: signed pushes, what the registry refuses, what a device resolves.

The publisher's key never reaches the registry: pushes carry signatures made with it, the
registry verifies them against the delegation in the top-level ``targets`` metadata, and a
real ``tuf.ngclient.Updater`` on a real socket resolves the package through ``publisher-<scene>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from datetime import datetime, timedelta, UTC
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from pitahaya.client_runtime.package import target_path
from pitahaya.publisher import RegistryClient, RegistryRejected, RegistryUnavailable, SigningRefusedError
from pitahaya.publisher.wire import PublisherSignatures, next_delegated_metadata
from pitahaya.registry.errors import InvalidArgumentError, PublisherSignatureError
from pitahaya.registry.tuf import TufRepository, publisher_role

SCENE = "watch_time"

if TYPE_CHECKING:
    from conftest import MetadataFault  # a fixture's type; conftest is never imported at run time


@pytest.fixture
def publisher() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def _tuf(app: FastAPI) -> TufRepository:
    repo: TufRepository = app.state.registry.tuf
    return repo


def _device(live_url: str, trusted_root: bytes, home: Path) -> Updater:
    (home / "metadata").mkdir(parents=True, exist_ok=True)
    return Updater(
        metadata_dir=str(home / "metadata"),
        metadata_base_url=f"{live_url}/tuf/metadata/",
        target_base_url=f"{live_url}/tuf/targets/",
        target_dir=str(home / "targets"),
        bootstrap=trusted_root,
    )


def _top_level_targets(repo: TufRepository) -> dict[str, object]:
    return {path: target.to_dict() for path, target in repo.targets().items()}


def test_a_delegated_scene_is_signed_by_its_publisher_and_devices_resolve_it(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes], publisher: CryptoSigner
) -> None:
    repo = _tuf(app)
    trusted_root = repo.metadata_bytes("root.json")
    role = repo.publishers.delegate(SCENE, [publisher.public_key])
    assert (role.name, role.threshold, role.terminating, role.paths) == (
        "publisher-watch_time", 1, True, ["packages/watch_time/*"]
    )  # fmt: skip
    archives = {version: make_archive(version=version) for version in ("1.0.0", "1.1.0")}
    other = make_archive(scene="other_scene")
    with RegistryClient(live_url, token=token) as registry:
        assert registry.get_delegation(SCENE)["metadata"] is None
        for archive in archives.values():
            registry.push(archive, signers=[publisher])
        registry.push(other)  # an undelegated scene: the registry's online key, as before
        registry.create_release(SCENE, "1.1.0")  # release documents stay with the online key
        delegation = registry.get_delegation(SCENE)
    signed = delegation["metadata"]["signed"]
    assert signed["version"] == 2 and set(signed["targets"]) == {target_path(SCENE, v) for v in archives}
    assert list(delegation["metadata"]["signatures"][0].values())[0] == publisher.public_key.keyid
    assert not any(path.startswith("packages/watch_time/") for path in _top_level_targets(repo))
    assert target_path("other_scene", "1.0.0") in _top_level_targets(repo)

    device = _device(live_url, trusted_root, tmp_path / "device")
    device.refresh()
    for version, archive in archives.items():
        info = device.get_targetinfo(target_path(SCENE, version))
        assert info is not None
        assert Path(device.download_target(info)).read_bytes() == archive
    info = device.get_targetinfo(target_path("other_scene", "1.0.0"))
    assert info is not None and Path(device.download_target(info)).read_bytes() == other
    assert (tmp_path / "device" / "metadata" / "publisher-watch_time.json").exists()


def test_pushes_without_the_publishers_signatures_change_nothing(
    app: FastAPI, live_url: str, token: str, make_archive: Callable[..., bytes], publisher: CryptoSigner
) -> None:
    repo = _tuf(app)
    repo.publishers.delegate(SCENE, [publisher.public_key])
    archive = make_archive()
    outsider = CryptoSigner.generate_ed25519()
    before = repo.metadata_bytes("timestamp.json")
    with RegistryClient(live_url, token=token) as registry:
        with pytest.raises(RegistryRejected) as unsigned:
            registry.push(archive)
        assert unsigned.value.status_code == 403 and "--signing-key" in unsigned.value.message
        with pytest.raises(SigningRefusedError, match="does not delegate scene watch_time to key"):
            registry.push(archive, signers=[outsider])  # refused locally: nothing is sent

    target = TargetFile.from_data(target_path(SCENE, "1.0.0"), archive)
    expires = datetime.now(UTC) + timedelta(days=30)

    def post(signers: list[CryptoSigner], *, version: int = 1, header: str | None = None) -> httpx.Response:
        signed = PublisherSignatures.sign(next_delegated_metadata(None, target, expires), signers)
        value = header or PublisherSignatures(version, signed.expires, signed.signatures).to_header()
        return httpx.post(
            f"{live_url}/api/v1/packages",
            content=archive,
            headers={"Authorization": f"Bearer {token}", PublisherSignatures.HEADER: value},
        )

    forged = post([outsider])  # a caller bypassing the client's check
    assert forged.status_code == 403 and "threshold of 1" in forged.json()["detail"]
    stale = post([publisher], version=3)
    assert stale.status_code == 409 and "next version is 1" in stale.json()["detail"]
    assert post([publisher], header="not-base64-json").status_code == 422
    wrong_target = TargetFile.from_data(target_path(SCENE, "1.0.0"), b"other bytes")
    other_bytes = PublisherSignatures.sign(next_delegated_metadata(None, wrong_target, expires), [publisher])
    assert post([publisher], header=other_bytes.to_header()).status_code == 403  # signed another archive

    assert repo.metadata_bytes("timestamp.json") == before
    assert repo.publishers.metadata(SCENE) is None
    with RegistryClient(live_url, token=token) as registry:
        assert registry.list_packages() == []
        registry.push(archive, signers=[publisher])  # the real publisher still can
        with pytest.raises(RegistryRejected) as duplicate:
            registry.push(archive, signers=[publisher])
        assert duplicate.value.status_code == 409
        with pytest.raises(RegistryRejected) as undelegated:
            registry.push(make_archive(scene="other_scene"), signers=[publisher])
        assert undelegated.value.status_code == 404  # no delegation to sign for
    signed = repo.publishers.metadata(SCENE)
    assert signed is not None and signed.signed.version == 1


def test_a_threshold_needs_that_many_publisher_keys(
    app: FastAPI, live_url: str, token: str, make_archive: Callable[..., bytes], publisher: CryptoSigner
) -> None:
    second = CryptoSigner.generate_ed25519()
    _tuf(app).publishers.delegate(SCENE, [publisher.public_key, second.public_key], threshold=2)
    with RegistryClient(live_url, token=token) as registry:
        with pytest.raises(RegistryRejected) as one_key:
            registry.push(make_archive(), signers=[publisher])
        assert one_key.value.status_code == 403
        assert registry.push(make_archive(), signers=[publisher, second])["version"] == "1.0.0"
    current = _tuf(app).publishers.metadata(SCENE)
    keyids = sorted([publisher.public_key.keyid, second.public_key.keyid])
    assert current is not None and sorted(current.signatures) == keyids
    with RegistryClient(live_url, token=token) as registry:
        (entry,) = [e for e in registry.list_audit_entries() if e["action"] == "push_package"]
    assert entry["detail"]["publisher_keyids"] == keyids


def test_the_online_key_never_signs_under_a_delegated_scene(tmp_path: Path, publisher: CryptoSigner) -> None:
    repo = TufRepository(tmp_path / "tuf")
    repo.initialize()
    repo.add_targets({"packages/early/early-1.0.0.tar.xz": b"signed before delegation"})
    with pytest.raises(InvalidArgumentError, match="delegate a scene before its first push"):
        repo.publishers.delegate("early", [publisher.public_key])
    for keys, threshold in (([], 1), ([publisher.public_key], 2), ([publisher.public_key], 0)):
        with pytest.raises(InvalidArgumentError, match="threshold"):
            repo.publishers.delegate(SCENE, keys, threshold)
    repo.publishers.delegate(SCENE, [publisher.public_key])
    before = repo.metadata_bytes("timestamp.json")
    with pytest.raises(PublisherSignatureError, match="delegated to publisher-watch_time"):
        repo.add_targets({"packages/watch_time/watch_time-9.9.9.tar.xz": b"forged", "releases/x/stable.json": b"{}"})
    assert repo.metadata_bytes("timestamp.json") == before
    repo.add_targets({"releases/watch_time/stable.json": b"{}"})  # release documents stay online


def test_re_delegating_replaces_the_keys_and_devices_refuse_the_old_signatures(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes], publisher: CryptoSigner
) -> None:
    repo = _tuf(app)
    trusted_root = repo.metadata_bytes("root.json")
    repo.publishers.delegate(SCENE, [publisher.public_key])
    with RegistryClient(live_url, token=token) as registry:
        registry.push(make_archive(), signers=[publisher])
    successor = CryptoSigner.generate_ed25519()
    repo.publishers.delegate(SCENE, [successor.public_key])
    delegation = RegistryClient(live_url).get_delegation(SCENE)
    assert list(delegation["keys"]) == [successor.public_key.keyid]  # the old key is gone
    device = _device(live_url, trusted_root, tmp_path / "device")
    device.refresh()
    with pytest.raises(UnsignedMetadataError):  # version 1 was signed by the key no longer trusted
        device.get_targetinfo(target_path(SCENE, "1.0.0"))
    # The successor does not sign on top of targets it cannot verify, unless told to, once.
    with RegistryClient(live_url, token=token) as registry:
        with pytest.raises(SigningRefusedError, match="--trust-current-targets"):
            registry.push(make_archive(version="1.1.0"), signers=[successor])
        registry.push(make_archive(version="1.1.0"), signers=[successor], trust_current=True)
        registry.push(make_archive(version="1.2.0"), signers=[successor])  # verifies again from now on
    assert delegation["role"] == publisher_role(SCENE) == "publisher-watch_time"
    device = _device(live_url, trusted_root, tmp_path / "device")
    device.refresh()
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        assert device.get_targetinfo(target_path(SCENE, version)) is not None


def test_a_delegated_push_that_fails_while_publishing_leaves_nothing_visible(
    app: FastAPI,
    live_url: str,
    token: str,
    make_archive: Callable[..., bytes],
    publisher: CryptoSigner,
    metadata_fault: MetadataFault,
) -> None:
    repo = _tuf(app)
    repo.publishers.delegate(SCENE, [publisher.public_key])
    before = repo.metadata_bytes("timestamp.json")
    archive = make_archive()
    # The blob and the row are written, then staging the role's version 1 fails, as on a full disk.
    with metadata_fault.staging("1.publisher-watch_time.json"):
        with RegistryClient(live_url, token=token) as registry, pytest.raises(RegistryUnavailable):
            registry.push(archive, signers=[publisher])
        with RegistryClient(live_url, token=token) as registry:  # uvicorn closes the connection after a 500
            assert registry.list_packages() == []
            assert repo.metadata_bytes("timestamp.json") == before and repo.publishers.metadata(SCENE) is None
    with RegistryClient(live_url, token=token) as registry:
        assert registry.push(archive, signers=[publisher])["version"] == "1.0.0"  # the same push, again
    current = repo.publishers.metadata(SCENE)
    assert current is not None and list(current.signed.targets) == [target_path(SCENE, "1.0.0")]
