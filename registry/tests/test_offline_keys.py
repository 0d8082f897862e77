"""PEP 458/480 key split: the running registry holds only online keys, and that is not enough
to change who signs a delegated scene.

The registry under test never sees the offline root and top-level ``targets`` keys: the
admin's `TufRepository` keeps them in a folder outside the registry's data dir (the "USB
stick"). Devices are real `PackageUpdater`s (python-tuf's ngclient) on a real socket.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta, UTC
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.ngclient import Updater

from pitahaya.client_runtime import PackageUpdater
from pitahaya.client_runtime.errors import UpdateVerificationError
from pitahaya.client_runtime.package import target_path
from pitahaya.publisher import RegistryClient
from pitahaya.registry import Settings, create_app
from pitahaya.registry.errors import ConfigurationError, SigningKeyError
from pitahaya.publisher.keys import KEY_FILE_MODE, load_private_key
from pitahaya.client_runtime.files import write_atomic
from pitahaya.registry.db import upgrade_to_head
from pitahaya.registry.storage import open_database
from pitahaya.registry.tuf import TufRepository, publisher_role
from pitahaya.registry.tuf.publication import Publication
from pitahaya.registry.clock import utcnow

pytestmark = pytest.mark.e2e

SCENE, OTHER = "watch_time", "other_scene"


@pytest.fixture
def admin(settings: Settings, tmp_path: Path) -> TufRepository:
    """The admin's view of the registry's TUF folder, with the offline keys on a separate stick."""
    engine, repo = open_database(settings, offline_keys_dir=tmp_path / "admin-stick")
    with repo.publish_lock:
        upgrade_to_head(engine)
        repo.initialize()
    return repo


@pytest.fixture
def app(settings: Settings, admin: TufRepository) -> FastAPI:
    """The registry, started on a TUF folder that holds only its online keys."""
    return create_app(settings)


@pytest.fixture
def publisher() -> CryptoSigner:
    return CryptoSigner.generate_ed25519()


def _device(live_url: str, scene: str, trusted_root: bytes, home: Path) -> PackageUpdater:
    return PackageUpdater(live_url, scene, "device-1", home, trusted_root=trusted_root)


def _publish(live_url: str, token: str, archive: bytes, scene: str, version: str, signers: list[Signer]) -> None:
    with RegistryClient(live_url, token=token) as registry:
        registry.push(archive, signers=signers)
        registry.create_release(scene, version)


def test_the_registry_serves_publishes_and_releases_without_the_offline_keys(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes],
    admin: TufRepository, publisher: CryptoSigner,
) -> None:  # fmt: skip
    server: TufRepository = app.state.registry.tuf
    assert server.keys.offline_keys_here() == [] and not (admin.keys.keys_dir.parent / "offline").exists()
    assert httpx.get(f"{live_url}/readyz").json() == {"database": "ok", "blobs": "ok", "tuf": "ok"}
    admin.publishers.delegate(SCENE, [publisher.public_key])
    trusted_root = server.metadata_bytes("root.json")

    delegated, undelegated = make_archive(scene=SCENE), make_archive(scene=OTHER)
    _publish(live_url, token, delegated, SCENE, "1.0.0", [publisher])
    _publish(live_url, token, undelegated, OTHER, "1.0.0", [])
    for scene, archive in ((SCENE, delegated), (OTHER, undelegated)):
        check = _device(live_url, scene, trusted_root, tmp_path / scene).check()
        assert check.version == "1.0.0" and check.archive_path is not None
        assert check.archive_path.read_bytes() == archive

    # Who signed what: the publisher its scene's packages, the online role everything else.
    assert set(server.targets()) == {target_path(OTHER, "1.0.0"), f"releases/{SCENE}/stable.json",
                                     f"releases/{OTHER}/stable.json"}  # fmt: skip
    top = json.loads(server.metadata_bytes(f"{_top_version(server)}.targets.json"))["signed"]
    assert top["targets"] == {}
    assert [role["name"] for role in top["delegations"]["roles"]] == [publisher_role(SCENE), "registry"]
    # The server re-signs what it signs (online role, snapshot, timestamp), never the offline roles.
    assert server.refresh(margin=2.0) == ["registry", "snapshot", "timestamp"]
    with pytest.raises(SigningKeyError, match="no key file"):
        server.publishers.delegate(OTHER, [publisher.public_key])
    with pytest.raises(SigningKeyError, match="no key file"):
        server.resign_offline(margin=2.0)
    assert _device(live_url, SCENE, trusted_root, tmp_path / SCENE).check().version == "1.0.0"


@pytest.mark.parametrize("stolen_role", ["registry", "snapshot"])
def test_a_registry_with_only_its_online_keys_cannot_change_a_delegation(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes],
    admin: TufRepository, publisher: CryptoSigner, stolen_role: str,
) -> None:  # fmt: skip
    server: TufRepository = app.state.registry.tuf
    admin.publishers.delegate(SCENE, [publisher.public_key])
    trusted_root = server.metadata_bytes("root.json")
    _publish(live_url, token, make_archive(), SCENE, "1.0.0", [publisher])
    installed = _device(live_url, SCENE, trusted_root, tmp_path / "installed")
    assert installed.check().version == "1.0.0"

    # The attacker owns the registry host: its online keys and its TUF folder. It hands the
    # scene to its own key in a new top-level targets, signs that with a key it has, then
    # signs a scene role with a forged package under its own key, and chains both in.
    attacker = CryptoSigner.generate_ed25519()
    stolen = load_private_key(server.keys.keys_dir / f"{stolen_role}.pem")
    forged_archive = make_archive(version="6.6.6")
    with server.publish_lock:
        top = server.store.current(Targets.type)
        name = publisher_role(SCENE)
        for keyid in list(top.signed.delegations.roles[name].keyids):
            top.signed.revoke_key(keyid, name)
        top.signed.add_key(attacker.public_key, name)
        top.signed.version += 1
        top.signatures.clear()
        top.sign(stolen)
        scene_role = server.publishers.metadata(SCENE)
        assert scene_role is not None
        scene_role.signed.targets[target_path(SCENE, "6.6.6")] = TargetFile.from_data(
            target_path(SCENE, "6.6.6"), forged_archive
        )
        scene_role.signed.version += 1
        scene_role.signatures.clear()
        scene_role.sign(attacker)
        forged = Publication(server.store, server.keys, utcnow)  # snapshot and timestamp by the stolen keys
        forged.add_signed(Targets.type, top)
        forged.add_signed(name, scene_role)
        server.store.write(forged.finish())

    for device in (installed, _device(live_url, SCENE, trusted_root, tmp_path / "fresh")):
        with pytest.raises(UpdateVerificationError, match="UnsignedMetadataError: targets was signed by 0/1 keys"):
            device.check()
    assert not any((tmp_path / "fresh" / "packages").glob("[0-9a-f]*"))
    assert installed.cached_archive(_sha256(installed)).exists()  # its verified package stays


def test_devices_never_resolve_a_delegated_scene_through_the_online_role(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes],
    admin: TufRepository, publisher: CryptoSigner,
) -> None:  # fmt: skip
    server: TufRepository = app.state.registry.tuf
    admin.publishers.delegate(SCENE, [publisher.public_key])
    trusted_root = server.metadata_bytes("root.json")
    genuine = make_archive()
    _publish(live_url, token, genuine, SCENE, "1.0.0", [publisher])

    # The attacker signs, with the online key it holds, other bytes for the released version
    # and a version the publisher never signed, in the online role.
    with server.publish_lock:
        forged = Publication(server.store, server.keys, utcnow)
        with forged.edit_targets("registry") as online:
            for version in ("1.0.0", "6.6.6"):
                path = target_path(SCENE, version)
                online.targets[path] = TargetFile.from_data(path, make_archive(version="6.6.6"))
        server.store.write(forged.finish())

    plain = Updater(
        metadata_dir=str(_mkdir(tmp_path / "ngclient")),
        metadata_base_url=f"{live_url}/tuf/metadata/",
        target_base_url=f"{live_url}/tuf/targets/",
        bootstrap=trusted_root,
    )
    plain.refresh()
    assert plain.get_targetinfo(f"releases/{SCENE}/stable.json") is not None  # loads the online role
    assert plain.get_targetinfo(target_path(SCENE, "6.6.6")) is None  # terminating: never looked there
    resolved = plain.get_targetinfo(target_path(SCENE, "1.0.0"))
    assert resolved is not None and resolved.hashes["sha256"] == hashlib.sha256(genuine).hexdigest()
    # The device goes further and refuses a path signed outside its delegation at all.
    with pytest.raises(UpdateVerificationError, match="delegated to publisher-watch_time but also signed by registry"):
        _device(live_url, SCENE, trusted_root, tmp_path / "device").check()


def test_rotating_the_online_and_the_offline_targets_keys_keeps_devices_updating(
    app: FastAPI, live_url: str, token: str, tmp_path: Path, make_archive: Callable[..., bytes],
    admin: TufRepository, publisher: CryptoSigner,
) -> None:  # fmt: skip
    admin.publishers.delegate(SCENE, [publisher.public_key])
    trusted_root = admin.metadata_bytes("root.json")
    devices = {scene: _device(live_url, scene, trusted_root, tmp_path / scene) for scene in (SCENE, OTHER)}
    before = {info.role: info.keyid for info in admin.key_info()}
    for minor, role in enumerate((None, "registry", "targets")):
        if role is not None:
            assert admin.rotate_key(role).keyid != before[role]
        version = f"1.{minor}.0"
        _publish(live_url, token, make_archive(scene=SCENE, version=version), SCENE, version, [publisher])
        _publish(live_url, token, make_archive(scene=OTHER, version=version), OTHER, version, [])
        for device in devices.values():
            assert device.check().version == version
    after = {info.role: info.keyid for info in admin.key_info()}
    assert {role for role in after if after[role] != before[role]} == {"registry", "targets"}
    assert json.loads(admin.metadata_bytes("root.json"))["signed"]["version"] == 2  # only targets' rotation


def test_a_repository_of_the_pre_release_layout_is_refused_with_what_to_do(settings: Settings) -> None:
    """The migration from the layout without the online role was dropped before 1.0: the
    registry refuses such a repository at start instead of serving or re-signing it."""
    _old_layout(settings.resolved_tuf_dir)
    before = sorted((p.name, p.read_bytes()) for p in (settings.resolved_tuf_dir / "metadata").iterdir())

    with pytest.raises(ConfigurationError, match="no online role 'registry'.*initialize a new one"):
        create_app(settings)
    assert sorted((p.name, p.read_bytes()) for p in (settings.resolved_tuf_dir / "metadata").iterdir()) == before


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _top_version(repo: TufRepository) -> int:
    snapshot_version = json.loads(repo.metadata_bytes("timestamp.json"))["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(repo.metadata_bytes(f"{snapshot_version}.snapshot.json"))["signed"]
    return int(snapshot["meta"]["targets.json"]["version"])


def _sha256(device: PackageUpdater) -> str:
    (cached,) = [p for p in device.packages_dir.iterdir() if not p.name.startswith(".")]
    return cached.name


def _old_layout(tuf_dir: Path) -> None:
    """A repository as registries wrote it before the online role: every key in ``keys/``, and
    the top-level ``targets`` signing targets itself."""
    now = datetime.now(UTC).replace(microsecond=0)
    signers = {
        role: CryptoSigner.generate_ed25519() for role in (Root.type, Targets.type, Snapshot.type, Timestamp.type)
    }
    for role, signer in signers.items():
        write_atomic(tuf_dir / "keys" / f"{role}.pem", signer.private_bytes, mode=KEY_FILE_MODE)
    root = Metadata(Root(expires=now + timedelta(days=365), consistent_snapshot=True))
    for role, signer in signers.items():
        root.signed.add_key(signer.public_key, role)
    snapshot = Metadata(Snapshot(expires=now + timedelta(days=7)))
    timestamp = Metadata(Timestamp(expires=now + timedelta(days=1), snapshot_meta=MetaFile(version=1)))
    for name, md in (("1.targets", Metadata(Targets(expires=now + timedelta(days=90)))), ("1.snapshot", snapshot),
                     ("timestamp", timestamp), ("1.root", root)):  # fmt: skip
        md.sign(signers[md.signed.type])
        write_atomic(tuf_dir / "metadata" / f"{name}.json", md.to_bytes())
