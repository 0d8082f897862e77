"""Delegation end to end: a publisher key made and used by the CLI, a registry process, real devices.

The point of delegating a scene: a registry holding only its online keys cannot make devices
install a package of that scene. Every way such a registry could try is shown to fail on the
device (``verification_failed``, default policy): adding the package to its online
``registry`` role, signing the scene's ``publisher-<scene>`` role itself, and handing the
scene to a key of its own in a top-level ``targets`` it signs with an online key.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile
from typer.testing import CliRunner

from pitahaya.cli.app import app
from pitahaya.client_runtime import Runtime
from pitahaya.client_runtime.package import target_path
from pitahaya.publisher import load_private_key
from pitahaya.publisher.wire import next_delegated_metadata
from pitahaya.registry.tuf import TufRepository, publisher_role
from pitahaya.registry.tuf.publication import Publication
from pitahaya.registry.clock import utcnow

from e2e_support import PATIENT_DEVICE, LiveRegistry, Pipeline

pytestmark = pytest.mark.e2e

runner = CliRunner()
SCENE = "watch_time"


def cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def device(registry: LiveRegistry, trusted_root: bytes, home: Path) -> Runtime:
    return Runtime(
        registry.url, SCENE, f"device-{home.name}", cache_dir=home, trusted_root=trusted_root, config=PATIENT_DEVICE
    )


def test_devices_install_only_what_the_scenes_publisher_signed(
    live_registry: LiveRegistry, pipeline: Pipeline, tmp_path: Path
) -> None:
    tuf_dir = live_registry.data_dir / "registry" / "tuf"
    trusted_root = live_registry.client().root_metadata()
    key = cli("keys", "publisher-init", "--out", str(tmp_path / "ml-engineer"))
    assert (Path(key["private_key"]).stat().st_mode & 0o777) == 0o600
    delegated = cli(
        "keys", "delegate", "--scene", SCENE, "--publisher-key", key["public_key"], "--tuf-dir", str(tuf_dir)
    )
    assert (delegated["role"], delegated["keyids"], delegated["threshold"]) == (
        "publisher-watch_time",
        [key["keyid"]],
        1,
    )
    archive = pipeline.built.path
    common = ["--registry", live_registry.url, "--token", live_registry.token]
    unsigned = runner.invoke(app, ["push", str(archive), *common])
    assert unsigned.exit_code == 1 and "403" in unsigned.output and "Traceback" not in unsigned.output
    pushed = cli("push", str(archive), "--signing-key", key["private_key"], *common)
    assert pushed["version"] == "1.0.0"
    live_registry.client().create_release(SCENE, "1.0.0")

    installed = device(live_registry, trusted_root, tmp_path / "a")
    assert (installed.refresh().outcome, installed.predict([pipeline.views[0].as_candidate()]).reason) == (
        "installed", "ok"
    )  # fmt: skip

    # A registry that holds its online keys but not the publisher's (nor the offline targets
    # key). The attacker works on the registry's own TUF folder; a `Publication` is the registry's
    # signing path minus the guard that `stage_targets` puts in front of it. The online role's
    # entry under the delegated path is never what ngclient resolves (the publisher's
    # terminating delegation comes first), and the device refuses it all the same.
    repo = TufRepository(tuf_dir)
    online_key = load_private_key(tuf_dir / "keys" / "registry.pem")
    entry = TargetFile(pushed["size_bytes"], {"sha256": pushed["sha256"]}, target_path(SCENE, "1.0.0"))
    with repo.publish_lock:
        forged_online = Publication(repo.store, repo.keys, utcnow)
        with forged_online.edit_targets("registry") as online:
            online.targets[entry.path] = entry
        repo.store.write(forged_online.finish())
    _assert_refused(live_registry, trusted_root, tmp_path / "b", pipeline)
    assert installed.refresh().reason == "verification_failed"
    assert installed.predict([pipeline.views[0].as_candidate()]).reason == "ok"  # keeps its verified package

    with repo.publish_lock:  # the attacker retreats: devices install again
        retreat = Publication(repo.store, repo.keys, utcnow)
        with retreat.edit_targets("registry") as online:
            del online.targets[entry.path]
        repo.store.write(retreat.finish())
    assert device(live_registry, trusted_root, tmp_path / "c").refresh().outcome == "installed"

    forged = next_delegated_metadata(
        repo.publishers.metadata(SCENE), entry, datetime.now(UTC) + timedelta(days=30)
    )  # the same targets, one version later, signed by the registry instead of the publisher
    forged.sign(online_key)
    repo.publishers.publish(SCENE, forged)
    _assert_refused(live_registry, trusted_root, tmp_path / "d", pipeline)

    # Nor can it hand the scene to a key of its own: that takes a new top-level targets, which
    # only the offline targets key signs.
    with repo.publish_lock:
        top = repo.store.current("targets")
        top.signed.add_key(CryptoSigner.generate_ed25519().public_key, publisher_role(SCENE))
        top.signed.version += 1
        top.signatures.clear()
        top.sign(online_key)
        handover = Publication(repo.store, repo.keys, utcnow)
        handover.add_signed("targets", top)
        repo.store.write(handover.finish())
    _assert_refused(live_registry, trusted_root, tmp_path / "e", pipeline)


def _assert_refused(registry: LiveRegistry, trusted_root: bytes, home: Path, pipeline: Pipeline) -> None:
    fresh = device(registry, trusted_root, home)
    event = fresh.refresh()
    assert (event.outcome, event.reason) == ("failed", "verification_failed"), event
    decision = fresh.predict([pipeline.views[0].as_candidate()])
    assert (decision.reason, decision.package_version, decision.watch_s) == ("verification_failed", None, None)
    assert not any((home / "packages").glob("[0-9a-f]*"))


def test_keys_publisher_init_never_overwrites_and_delegate_explains_its_refusals(tmp_path: Path) -> None:
    cli("keys", "publisher-init", "--out", str(tmp_path / "keys"))
    again = runner.invoke(app, ["keys", "publisher-init", "--out", str(tmp_path / "keys")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    tuf_dir = tmp_path / "tuf"
    public = str(tmp_path / "keys" / "publisher.pub.pem")
    for args, message in (
        (["--scene", SCENE, "--publisher-key", public], "pitahaya keys init"),
        (["--scene", "Bad-Scene", "--publisher-key", public], "scene"),
        (["--scene", SCENE, "--publisher-key", str(tmp_path / "missing.pem")], "no public key file"),
    ):
        result = runner.invoke(app, ["keys", "delegate", *args, "--tuf-dir", str(tuf_dir)])
        assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output
    cli("keys", "init", "--tuf-dir", str(tuf_dir))
    args = ["--scene", SCENE, "--publisher-key", public, "--threshold", "2", "--tuf-dir", str(tuf_dir)]
    result = runner.invoke(app, ["keys", "delegate", *args])
    assert result.exit_code == 1 and "threshold 2" in " ".join(result.output.split())
