"""The TUF repository on its own: layout, version chain, expiry refresh (online and offline), key handling."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from pitahaya.registry.errors import ExpiredMetadataError, NotFoundError, SigningKeyError
from pitahaya.registry.tuf import OFFLINE_ROLES, ONLINE_ROLE, TOP_LEVEL_ROLES, TufRepository, parse_consistent_target


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(tmp_path: Path, clock: FakeClock) -> TufRepository:
    repository = TufRepository(tmp_path / "tuf", clock=clock)
    repository.initialize()
    return repository


def _signed(repo: TufRepository, name: str) -> dict[str, object]:
    signed: dict[str, object] = json.loads(repo.metadata_bytes(name))["signed"]
    return signed


def test_initialize_writes_keys_and_version_1_once(repo: TufRepository) -> None:
    before = repo.metadata_bytes("root.json")
    repo.initialize()

    assert repo.metadata_bytes("root.json") == before == repo.metadata_bytes("1.root.json")
    assert _signed(repo, "1.root.json")["consistent_snapshot"] is True
    assert sorted(p.name for p in repo.store.metadata_dir.iterdir()) == [
        "1.registry.json",
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "timestamp.json",
    ]
    for folder, roles in (
        (repo.keys.keys_dir, ["registry", "snapshot", "timestamp"]),
        (repo.keys.offline_keys_dir, OFFLINE_ROLES),
    ):
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{role}.pem" for role in roles)
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in folder.iterdir())
    top = _signed(repo, "1.targets.json")
    assert top["targets"] == {}
    assert [(r["name"], r["paths"], r["terminating"]) for r in top["delegations"]["roles"]] == [  # type: ignore[index]
        ("registry", ["releases/*/*", "packages/*/*"], False)
    ]


def test_add_targets_bumps_targets_snapshot_and_timestamp(repo: TufRepository) -> None:
    repo.add_targets({"packages/s/s-1.0.0.tar.xz": b"archive"})
    repo.add_targets({"releases/s/stable.json": (3, "ab" * 32)})

    assert _signed(repo, "timestamp.json")["version"] == 3
    assert _signed(repo, "timestamp.json")["meta"] == {"snapshot.json": {"version": 3}}
    assert _signed(repo, "3.snapshot.json")["meta"] == {"targets.json": {"version": 1}, "registry.json": {"version": 3}}
    assert sorted(repo.targets()) == ["packages/s/s-1.0.0.tar.xz", "releases/s/stable.json"]
    assert sorted(_signed(repo, "3.registry.json")["targets"]) == sorted(repo.targets())  # type: ignore[arg-type]
    assert repo.metadata_bytes("2.registry.json")  # older versions stay for clients mid-update


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(hours=1), []),
        (timedelta(hours=13), ["timestamp"]),
        (timedelta(days=4), ["snapshot", "timestamp"]),
        (timedelta(days=46), ["registry", "snapshot", "timestamp"]),
        (timedelta(days=183), ["registry", "snapshot", "timestamp"]),  # root and targets are offline
    ],
)
def test_refresh_resigns_online_roles_past_half_their_lifetime_without_the_offline_keys(
    repo: TufRepository, clock: FakeClock, elapsed: timedelta, expected: list[str]
) -> None:
    shutil.rmtree(repo.keys.offline_keys_dir)  # the server never has them
    clock.now += elapsed

    assert repo.refresh() == expected
    repo.check_ready()
    expires = datetime.fromisoformat(str(_signed(repo, "timestamp.json")["expires"]).replace("Z", "+00:00"))
    assert expires - clock.now >= timedelta(hours=12)


def test_an_expired_timestamp_makes_the_repository_not_ready_until_refreshed(
    repo: TufRepository, clock: FakeClock
) -> None:
    clock.now += timedelta(days=1, seconds=1)
    with pytest.raises(ExpiredMetadataError, match="timestamp.json expired"):
        repo.check_ready()
    assert repo.refresh() == ["timestamp"]
    repo.check_ready()


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(days=1), []),
        (timedelta(days=183), ["root", "targets", "snapshot", "timestamp"]),
    ],
)
def test_resign_offline_renews_root_and_top_level_targets(
    repo: TufRepository, clock: FakeClock, elapsed: timedelta, expected: list[str]
) -> None:
    clock.now += elapsed
    due = {info.role: info.resign_due for info in repo.key_info()}
    assert due["root"] == due["targets"] == bool(expected)

    assert repo.resign_offline() == expected
    assert not any(info.resign_due for info in repo.key_info() if info.location == "offline")
    shutil.rmtree(repo.keys.offline_keys_dir)
    with pytest.raises(SigningKeyError, match="no key file"):
        repo.resign_offline(margin=2.0)
    assert [(i.role, i.present) for i in repo.key_info() if not i.present] == [("root", False), ("targets", False)]


def _versions(repo: TufRepository) -> dict[str, int]:
    timestamp = _signed(repo, "timestamp.json")
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]  # type: ignore[index]
    snapshot = _signed(repo, f"{snapshot_version}.snapshot.json")
    root = _signed(repo, "root.json")
    return {
        "root": int(root["version"]),  # type: ignore[call-overload]
        "targets": int(snapshot["meta"]["targets.json"]["version"]),  # type: ignore[index]
        "registry": int(snapshot["meta"]["registry.json"]["version"]),  # type: ignore[index]
        "snapshot": int(snapshot_version),
        "timestamp": int(timestamp["version"]),  # type: ignore[call-overload]
    }


@pytest.mark.parametrize("role", [*TOP_LEVEL_ROLES, ONLINE_ROLE])
def test_rotate_key_publishes_one_root_version_and_resigns_the_chain_below(
    repo: TufRepository, clock: FakeClock, role: str
) -> None:
    before_keys = {info.role: info.keyid for info in repo.key_info()}
    before = _versions(repo)
    clock.now += timedelta(hours=1)

    info = repo.rotate_key(role)

    assert info.role == role and info.keyid != before_keys[role] and info.mode == "0600" and info.trusted
    after = _versions(repo)
    resigned = {
        "root": {"root"},
        "targets": {"root", "targets", "snapshot", "timestamp"},  # N+1, never N+2
        "registry": {"targets", "registry", "snapshot", "timestamp"},  # the delegation changes, not root
        "snapshot": {"root", "snapshot", "timestamp"},
        "timestamp": {"root", "timestamp"},
    }[role]
    assert {r for r in after if after[r] != before[r]} == resigned
    assert all(after[r] == before[r] + 1 for r in resigned)
    if role == ONLINE_ROLE:
        top = _signed(repo, f"{after['targets']}.targets.json")
        assert top["delegations"]["roles"][0]["keyids"] == [info.keyid]  # type: ignore[index]
    else:
        assert _signed(repo, "root.json")["roles"][role]["keyids"] == [info.keyid]  # type: ignore[index]
    assert {i.role: i.keyid for i in repo.key_info() if i.role != role} == {
        r: k for r, k in before_keys.items() if r != role
    }
    repo.check_ready()  # every role's key loads and is trusted by the new root


def test_rotate_key_refuses_an_unsafe_key_and_changes_nothing(repo: TufRepository) -> None:
    (repo.keys.keys_dir / "snapshot.pem").chmod(0o640)
    with pytest.raises(SigningKeyError, match="must be 0600"):
        repo.rotate_key("targets")
    assert repo.metadata_bytes("root.json") == repo.metadata_bytes("1.root.json")
    with pytest.raises(ValueError, match="unknown role"):
        repo.rotate_key("publisher-watch_time")


def test_unknown_metadata_names_are_not_found(repo: TufRepository) -> None:
    for name in (
        "2.root.json",
        "../keys/root.pem",
        "root.pem",
        "0.root.json",
        "foo.json",
        "1.publisher-watch_time.json",  # a valid name, but no such role yet
        "1.publisher-../keys.json",
    ):
        with pytest.raises(NotFoundError):
            repo.metadata_bytes(name)


def test_parse_consistent_target() -> None:
    digest = "ab" * 32
    assert parse_consistent_target(f"releases/s/{digest}.stable.json") == ("releases/s/stable.json", digest)
    with pytest.raises(NotFoundError):
        parse_consistent_target("releases/s/stable.json")
