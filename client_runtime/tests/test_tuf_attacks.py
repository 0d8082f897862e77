"""Failure and attack scenarios through the real `PackageUpdater` and python-tuf's ngclient.

Each test checks two things: the update is refused with the right reason code (seen by the
hooks), and `predict` keeps answering (with the cached package, or the default policy).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pitahaya.client_runtime import (
    Hooks,
    PackageUpdater,
    Runtime,
    UpdateDownloadError,
    UpdateEvent,
    UpdateVerificationError,
    target_path,
)
from pitahaya.client_runtime.releases import Targeting

from package_factory import linear_model, make_archive
from runtime_support import CANDIDATES, LocalUpdater, PATIENT, Recorder
from signed_repo import MemoryFetcher, SignedRepo, serve_http

N_FEATURES = 17


def _repo(version: str = "1.0.0", release_id: int = 1) -> SignedRepo:
    repo = SignedRepo()
    repo.add_package(version, make_archive(version=version))
    repo.add_release(version, release_id=release_id)
    repo.publish()
    return repo


def _device(
    cache: Path,
    repo: SignedRepo,
    *,
    trusted_root: bytes | None = None,
    hooks: Hooks | None = None,
    platform: str | None = None,
    app_version: str | None = None,
) -> Runtime:
    root = trusted_root if trusted_root is not None else repo.root_bytes
    updater = PackageUpdater(
        "http://registry.test",
        "watch_time",
        "device-1",
        cache,
        trusted_root=root,
        fetcher=MemoryFetcher(repo),
        platform=platform,
        app_version=app_version,
    )
    return Runtime(
        "http://registry.test", "watch_time", "device-1", cache_dir=cache, updater=updater, hooks=hooks, config=PATIENT
    )


def test_a_signed_package_installs_through_tuf(tmp_path: Path) -> None:
    hooks = Recorder()
    rt = _device(tmp_path, _repo(), hooks=hooks)
    assert rt.refresh().outcome == "installed"
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", "1.0.0")


def test_devices_follow_the_signed_targeting_of_their_platform_and_app_version(tmp_path: Path) -> None:
    repo = _repo()
    repo.add_package("1.1.0", make_archive(version="1.1.0"))
    targeting = Targeting(platforms=("android",), app_version_min="5.0.0")
    repo.add_release("1.1.0", release_id=2, previous_version="1.0.0", targeting=targeting)
    repo.publish()
    devices = {
        ("android", "5.2.0"): "1.1.0",
        ("android", "4.9.9"): "1.0.0",
        ("ios", "5.2.0"): "1.0.0",
        (None, None): "1.0.0",  # a device that does not say is outside a targeted rollout
    }
    for n, ((platform, app_version), want) in enumerate(devices.items()):
        rt = _device(tmp_path / str(n), repo, platform=platform, app_version=app_version)
        assert rt.refresh().outcome == "installed"
        assert rt.predict(CANDIDATES).package_version == want, (platform, app_version)


def test_metadata_signed_by_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    trusted, impostor = _repo(), _repo()  # same content, different keys
    hooks = Recorder()
    rt = _device(tmp_path, impostor, trusted_root=trusted.root_bytes, hooks=hooks)
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("failed", "verification_failed")
    assert "signed by 0/1 keys" in event.detail
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version, decision.watch_s) == ("verification_failed", None, None)
    assert hooks.fallbacks == ["verification_failed"]
    assert not (tmp_path / "packages").exists() or not any((tmp_path / "packages").iterdir())


def test_older_metadata_served_as_newer_is_refused(tmp_path: Path) -> None:
    repo = _repo()
    repo.add_package("1.1.0", make_archive(version="1.1.0"))
    repo.add_release("1.1.0", release_id=2)
    repo.publish()
    hooks = Recorder()
    rt = _device(tmp_path, repo, hooks=hooks)
    assert rt.refresh().outcome == "installed" and rt.active_version == "1.1.0"
    repo.replay(0)  # a mirror serves the first publication: older timestamp/snapshot/targets
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("failed", "verification_failed")
    assert "version" in event.detail.lower()
    assert hooks.updates[-1].reason == "verification_failed"
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", "1.1.0")


def test_an_older_release_document_newly_signed_is_refused(tmp_path: Path) -> None:
    repo = _repo(release_id=5)
    hooks = Recorder()
    rt = _device(tmp_path, repo, hooks=hooks)
    assert rt.refresh().outcome == "installed"
    repo.add_package("0.9.0", make_archive(version="0.9.0"))
    repo.add_release("0.9.0", release_id=4)  # validly signed, but an older release
    repo.publish()
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("rejected", "release_rollback")
    assert rt.predict(CANDIDATES).package_version == "1.0.0"


def test_expired_timestamp_stops_updates_but_not_inference(tmp_path: Path) -> None:
    repo = _repo()
    hooks = Recorder()
    rt = _device(tmp_path, repo, hooks=hooks)
    assert rt.refresh().outcome == "installed"
    # A new release is signed, but the timestamp served with it has already expired.
    repo.add_package("1.1.0", make_archive(version="1.1.0"))
    repo.add_release("1.1.0", release_id=2)
    repo.publish(timestamp_expires=datetime.now(UTC) - timedelta(minutes=1))
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("failed", "metadata_expired")
    assert "expired" in event.detail
    assert hooks.updates[-1].reason == "metadata_expired"
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", "1.0.0")
    # A restart on the frozen registry still answers from the verified cache.
    restarted = _device(tmp_path, repo)
    assert restarted.refresh().reason == "metadata_expired"
    assert restarted.predict(CANDIDATES).package_version == "1.0.0"


def test_a_registry_that_stops_re_signing_freezes_updates_not_inference(tmp_path: Path) -> None:
    repo = SignedRepo()
    repo.add_package("1.0.0", make_archive())
    repo.add_release("1.0.0", release_id=1)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    repo.publish(timestamp_expires=expires)
    hooks = Recorder()
    rt = _device(tmp_path, repo, hooks=hooks)
    assert rt.refresh().outcome == "installed"
    while datetime.now(UTC) <= expires + timedelta(seconds=1):  # real time passes; nothing is re-signed
        time.sleep(0.1)
    event = rt.refresh()  # the same, now expired, timestamp is all the registry has
    assert (event.outcome, event.reason) == ("failed", "metadata_expired")
    decision = rt.predict(CANDIDATES)
    assert (decision.reason, decision.package_version) == ("ok", "1.0.0")


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (make_archive(version="1.1.0", feature_source="raise RuntimeError('boom')\n"), "feature_code"),
        (make_archive(version="1.1.0", model=linear_model(N_FEATURES + 1, width=N_FEATURES + 1)), "model_load"),
    ],
    ids=["features_py_raises", "onnx_wrong_input_shape"],
)
def test_a_signed_but_broken_package_is_rejected_and_the_previous_one_answers(
    tmp_path: Path, archive: bytes, reason: str
) -> None:
    repo = _repo()
    hooks = Recorder()
    rt = _device(tmp_path, repo, hooks=hooks)
    assert rt.refresh().outcome == "installed"
    repo.add_package("1.1.0", archive)
    repo.add_release("1.1.0", release_id=2)
    repo.publish()
    event = rt.refresh()
    assert (event.outcome, event.reason) == ("rejected", reason)
    assert rt.predict(CANDIDATES).package_version == "1.0.0"
    # On a fresh device (nothing cached) the default policy answers with the package's reason.
    fresh_hooks = Recorder()
    fresh = _device(tmp_path / "fresh", repo, hooks=fresh_hooks)
    assert fresh.refresh().reason == reason
    decision = fresh.predict(CANDIDATES)
    assert (decision.reason, decision.watch_s) == (reason, None)
    assert fresh_hooks.fallbacks == [reason] and fresh_hooks.inferences[-1].reason == reason


@pytest.mark.parametrize(
    ("served", "error", "reason"),
    [
        (lambda archive: archive + b"\0" * 4096, UpdateVerificationError, "verification_failed"),
        (lambda archive: archive[:-1] + bytes([archive[-1] ^ 1]), UpdateVerificationError, "verification_failed"),
        (lambda archive: None, UpdateDownloadError, "download_failed"),
    ],
    ids=["longer_than_signed", "same_length_other_bytes", "missing"],
)
def test_a_tampered_target_is_a_verification_failure_and_a_missing_one_a_download_failure(
    tmp_path: Path, served: Callable[[bytes], bytes | None], error: type[Exception], reason: str
) -> None:
    repo = _repo()
    path = f"targets/{target_path('watch_time', '1.0.0')}"
    body = served(repo.served[path])
    if body is None:
        del repo.served[path]
    else:
        repo.served[path] = body
    updater = PackageUpdater(
        "http://registry.test", "watch_time", "device-1", tmp_path, trusted_root=repo.root_bytes,
        fetcher=MemoryFetcher(repo),
    )  # fmt: skip
    with pytest.raises(error) as refused:
        updater.check()
    assert refused.value.reason == reason
    assert not any((tmp_path / "packages").iterdir())  # nothing cached, not even a partial download


def test_the_trusted_root_can_be_a_file_path_and_a_wrong_one_is_a_clear_verification_error(tmp_path: Path) -> None:
    repo = _repo()
    root_file = tmp_path / "1.root.json"
    root_file.write_bytes(repo.root_bytes)
    for shipped in (root_file, str(root_file)):
        cache = tmp_path / f"device-{type(shipped).__name__}"
        updater = PackageUpdater(
            "http://registry.test", "watch_time", "device-1", cache, trusted_root=shipped, fetcher=MemoryFetcher(repo)
        )
        assert updater.check().version == "1.0.0"
    for shipped, message in (
        (tmp_path / "missing.json", "cannot read the trusted root file"),
        (repo.root_bytes.decode(), "trusted_root is JSON text"),
    ):
        updater = PackageUpdater(
            "http://registry.test", "watch_time", "device-1", tmp_path / "fresh", trusted_root=shipped,
            fetcher=MemoryFetcher(repo),
        )  # fmt: skip
        with pytest.raises(UpdateVerificationError, match=message):
            updater.check()


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pitahaya.client_runtime import PackageUpdater
    url, cache, root = sys.argv[1:4]
    PackageUpdater(url, "watch_time", "device-1", cache, trusted_root=Path(root).read_bytes()).check()
    """
)


def test_sigkill_during_download_leaves_a_consistent_cache(tmp_path: Path) -> None:
    repo = _repo()
    cache = tmp_path / "device"
    with serve_http(repo) as server:
        url = server["url"]
        first = Runtime(url, "watch_time", "device-1", cache_dir=cache, trusted_root=repo.root_bytes, config=PATIENT)
        assert first.refresh().outcome == "installed"
        # 2.0.0 is a large target on a slow link; a process starts downloading it and is killed.
        repo.add_package("2.0.0", os.urandom(12 << 20))
        repo.add_release("2.0.0", release_id=2)
        repo.publish()
        root_file = tmp_path / "root.json"
        root_file.write_bytes(repo.root_bytes)
        child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(cache), str(root_file)])
        try:
            deadline = time.monotonic() + 60
            while server["sent"] < (2 << 20) and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert child.poll() is None, "the download finished or failed before it could be interrupted"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(30)
    assert child.returncode == -signal.SIGKILL
    packages = cache / "packages"
    complete = [p for p in packages.iterdir() if not p.name.startswith(".")]
    assert len(complete) == 1  # only 1.0.0: nothing of 2.0.0 looks complete
    assert [p for p in packages.iterdir() if p.name.startswith(".download-")]  # the killed download's temp file
    # Next start (registry gone): leftovers removed, state loads, the verified package answers.
    offline = LocalUpdater(cache)
    offline.offline = True
    hooks = Recorder()
    restarted = Runtime(url, "watch_time", "device-1", cache_dir=cache, updater=offline, hooks=hooks, config=PATIENT)
    assert sorted(p.name for p in packages.iterdir()) == [complete[0].name]
    assert restarted.active_version is None  # cached packages load on the first refresh, off the host's thread
    event = restarted.refresh()
    assert (event.outcome, event.reason) == ("failed", UpdateDownloadError.reason)
    assert restarted.active_version == "1.0.0" and not hooks.errors
    assert restarted.predict(CANDIDATES).package_version == "1.0.0"
    assert isinstance(hooks.updates[-1], UpdateEvent)
