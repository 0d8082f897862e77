"""The TUF repository on its own: layout, version chain, expiry refresh, key handling."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, UTC
from pathlib import Path

import pytest

from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.tuf_repo import ROLES, TufRepository, parse_consistent_target


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
    assert sorted(p.name for p in repo.metadata_dir.iterdir()) == [
        "1.root.json",
        "1.snapshot.json",
        "1.targets.json",
        "timestamp.json",
    ]
    for role in ROLES:
        assert stat.S_IMODE((repo.keys_dir / f"{role}.pem").stat().st_mode) == 0o600


def test_add_targets_bumps_targets_snapshot_and_timestamp(repo: TufRepository) -> None:
    repo.add_targets({"packages/s/s-1.0.0.tar.xz": b"archive"})
    repo.add_targets({"releases/s/stable.json": (3, "ab" * 32)})

    assert _signed(repo, "timestamp.json")["version"] == 3
    assert _signed(repo, "timestamp.json")["meta"] == {"snapshot.json": {"version": 3}}
    assert _signed(repo, "3.snapshot.json")["meta"] == {"targets.json": {"version": 3}}
    assert sorted(repo.targets()) == ["packages/s/s-1.0.0.tar.xz", "releases/s/stable.json"]
    assert repo.metadata_bytes("2.targets.json")  # older versions stay for clients mid-update


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(hours=1), []),
        (timedelta(hours=13), ["timestamp"]),
        (timedelta(days=4), ["snapshot", "timestamp"]),
        (timedelta(days=46), ["targets", "snapshot", "timestamp"]),
        (timedelta(days=183), ["root", "targets", "snapshot", "timestamp"]),
    ],
)
def test_refresh_resigns_roles_past_half_their_lifetime(
    repo: TufRepository, clock: FakeClock, elapsed: timedelta, expected: list[str]
) -> None:
    clock.now += elapsed

    assert repo.refresh() == expected
    expires = datetime.fromisoformat(str(_signed(repo, "timestamp.json")["expires"]).replace("Z", "+00:00"))
    assert expires - clock.now >= timedelta(hours=12)


def test_unknown_metadata_names_are_not_found(repo: TufRepository) -> None:
    for name in ("2.root.json", "../keys/root.pem", "root.pem", "0.root.json", "foo.json"):
        with pytest.raises(NotFoundError):
            repo.metadata_bytes(name)


def test_parse_consistent_target() -> None:
    digest = "ab" * 32
    assert parse_consistent_target(f"releases/s/{digest}.stable.json") == ("releases/s/stable.json", digest)
    with pytest.raises(NotFoundError):
        parse_consistent_target("releases/s/stable.json")
