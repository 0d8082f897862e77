"""`pitahaya keys init|list|rotate|resign` on a real TUF repository, followed by a real TUF client.

The device side is python-tuf's `Updater` reading the repository's metadata through a
fetcher seam (`RepositoryFetcher`) instead of HTTP: the registry's HTTP serving is tested by
the registry; here what matters is that the signed chain a device sees survives rotation.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface
from typer.testing import CliRunner

from pitahaya.cli.app import app
from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.tuf import TufRepository

runner = CliRunner()
ROLES = ["root", "targets", "registry", "snapshot", "timestamp"]
OFFLINE = {"root", "targets"}


class RepositoryFetcher(FetcherInterface):
    """Serves ``<base>/metadata/<name>`` from a `TufRepository` as the registry's HTTP route does."""

    def __init__(self, repo: TufRepository) -> None:
        self.repo = repo

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            yield self.repo.metadata_bytes(url.rsplit("/", 1)[-1])
        except NotFoundError:
            raise DownloadHTTPError(f"not found: {url}", 404) from None


def text(result) -> str:
    """The command's output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def keys(*args: str) -> dict:
    result = runner.invoke(app, ["keys", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def tuf_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry" / "tuf"


def device(tuf_dir: Path, trusted_root: bytes, home: Path) -> Updater:
    (home / "metadata").mkdir(parents=True, exist_ok=True)
    return Updater(
        metadata_dir=str(home / "metadata"),
        metadata_base_url="http://registry/tuf/metadata/",
        target_base_url="http://registry/tuf/targets/",
        target_dir=str(home / "targets"),
        fetcher=RepositoryFetcher(TufRepository(tuf_dir)),
        bootstrap=trusted_root,
    )


def test_init_creates_private_keys_and_list_shows_them(tmp_path: Path, tuf_dir: Path) -> None:
    listed = keys("init", "--data-dir", str(tmp_path))["keys"]
    assert [k["role"] for k in listed] == ROLES
    assert all(k["mode"] == "0600" and k["scheme"] == "ed25519" and k["trusted"] and k["present"] for k in listed)
    for k in listed:
        folder = tuf_dir / ("offline" if k["role"] in OFFLINE else "keys")
        assert stat.S_IMODE(os.stat(k["path"]).st_mode) == 0o600 and Path(k["path"]).parent == folder
        assert k["location"] == ("offline" if k["role"] in OFFLINE else "online") and not k["resign_due"]
    assert keys("list", "--tuf-dir", str(tuf_dir))["keys"] == listed
    assert keys("init", "--tuf-dir", str(tuf_dir))["keys"] == listed  # idempotent: keys are kept

    # The offline folder moved off the host: listed from the metadata, the online keys still load.
    os.rename(tuf_dir / "offline", tmp_path / "usb")
    away = keys("list", "--tuf-dir", str(tuf_dir))["keys"]
    assert [(k["role"], k["keyid"], k["present"]) for k in away] == [
        (k["role"], k["keyid"], k["role"] not in OFFLINE) for k in listed
    ]
    assert keys("list", "--tuf-dir", str(tuf_dir), "--offline-keys", str(tmp_path / "usb"))["keys"] == [
        {**k, "path": str(tmp_path / "usb" / Path(k["path"]).name)} if k["role"] in OFFLINE else k for k in listed
    ]
    result = runner.invoke(app, ["keys", "resign", "--margin", "2", "--tuf-dir", str(tuf_dir)])
    assert result.exit_code == 1 and "no key file" in text(result) and "root.pem" in text(result)
    resigned = keys("resign", "--margin", "2", "--tuf-dir", str(tuf_dir), "--offline-keys", str(tmp_path / "usb"))
    assert resigned == {"resigned": ["root", "targets", "snapshot", "timestamp"]}


@pytest.mark.parametrize("role", ["targets", "registry", "timestamp", "root"])
def test_rotation_is_followed_by_a_device_holding_the_old_root(tmp_path: Path, tuf_dir: Path, role: str) -> None:
    offline = ["--offline-keys", str(tmp_path / "admin")]
    before = {k["role"]: k for k in keys("init", "--tuf-dir", str(tuf_dir), *offline)["keys"]}
    repo = TufRepository(tuf_dir)
    repo.add_targets({"packages/watch_time/watch_time-1.0.0.tar.xz": b"package bytes"})
    trusted_root = repo.metadata_bytes("1.root.json")
    first = device(tuf_dir, trusted_root, tmp_path / "device")
    first.refresh()

    rotated = keys("rotate", role, "--tuf-dir", str(tuf_dir), *offline)
    assert rotated["role"] == role and rotated["keyid"] != before[role]["keyid"] and rotated["mode"] == "0600"
    after = {k["role"]: k for k in keys("list", "--tuf-dir", str(tuf_dir), *offline)["keys"]}
    assert all(k["trusted"] for k in after.values())
    assert {r for r in ROLES if after[r]["keyid"] != before[r]["keyid"]} == {role}

    # The device that trusted root v1 (with state) and a fresh one both follow the rotation.
    for updater in (
        device(tuf_dir, trusted_root, tmp_path / "device"),
        device(tuf_dir, trusted_root, tmp_path / "new"),
    ):
        updater.refresh()
        assert updater.get_targetinfo("packages/watch_time/watch_time-1.0.0.tar.xz") is not None
    root = json.loads(repo.metadata_bytes("root.json"))["signed"]
    if role == "registry":  # the top-level targets names the online role's key; root is unchanged
        assert root["version"] == 1
    else:
        assert root["roles"][role]["keyids"] == [rotated["keyid"]]


def test_a_world_readable_key_is_refused_with_the_fix(tmp_path: Path, tuf_dir: Path) -> None:
    keys("init", "--tuf-dir", str(tuf_dir))
    (tuf_dir / "offline" / "root.pem").chmod(0o644)
    for command in (["list"], ["rotate", "snapshot"]):
        result = runner.invoke(app, ["keys", *command, "--tuf-dir", str(tuf_dir)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "has mode 0644; it must be 0600" in text(result) and "chmod 600" in text(result)
    assert TufRepository(tuf_dir).metadata_bytes("root.json") == TufRepository(tuf_dir).metadata_bytes("1.root.json")


def test_a_missing_key_or_repository_is_a_clear_error(tmp_path: Path) -> None:
    tuf_dir = tmp_path / ("a-long-folder-name-" * 6) / "tuf"  # longer than a terminal line
    result = runner.invoke(app, ["keys", "list", "--tuf-dir", str(tuf_dir)])
    assert result.exit_code == 1 and "pitahaya keys init" in text(result)
    keys("init", "--tuf-dir", str(tuf_dir))
    (tuf_dir / "keys" / "timestamp.pem").unlink()
    result = runner.invoke(app, ["keys", "rotate", "targets", "--tuf-dir", str(tuf_dir)])
    # The path stays whole however long it is: an error is never wrapped.
    assert result.exit_code == 1 and "no key file" in text(result)
    assert str(tuf_dir / "keys" / "timestamp.pem") in result.output
    result = runner.invoke(app, ["keys", "rotate", "admin", "--tuf-dir", str(tuf_dir)])
    assert result.exit_code == 1 and "unknown role 'admin'" in text(result)


def test_admin_commands_need_the_offline_keys(
    tmp_path: Path, tuf_dir: Path
) -> None:
    keys("init", "--tuf-dir", str(tuf_dir), "--offline-keys", str(tmp_path / "usb"))
    public = keys("publisher-init", "--out", str(tmp_path / "publisher"))["public_key"]
    before = TufRepository(tuf_dir).metadata_bytes("timestamp.json")
    for command in (
        ["rotate", "targets"],
        ["rotate", "registry"],
        ["resign", "--margin", "2"],
        ["delegate", "--scene", "watch_time", "--publisher-key", public],
    ):
        result = runner.invoke(app, ["keys", *command, "--tuf-dir", str(tuf_dir)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "no key file" in text(result) and str(tuf_dir / "offline") in text(result).replace(" ", "")
    assert TufRepository(tuf_dir).metadata_bytes("timestamp.json") == before
