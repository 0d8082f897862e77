"""Properties of rollouts: buckets, percents, widening, targeting and the layers under a release.

The examples in test_releases.py pin single cases; these hold for any device, percent,
targeting and stack of rollouts Hypothesis can draw.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import Release, ReleaseError, Targeting
from pitahaya.client_runtime.package import parse_version
from pitahaya.client_runtime.releases import (
    BUCKETS,
    MAX_EARLIER_ROLLOUTS,
    Rollout,
    layered,
    percent_to_buckets,
    rollout_bucket,
)

PLATFORMS = ("android", "ios", "web")

versions = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 12)).map(lambda t: ".".join(map(str, t)))
percents = st.one_of(st.sampled_from([0.0, 0.01, 0.015, 1.0, 50.0, 99.99, 100.0]), st.floats(0.0, 100.0))


@st.composite
def targetings(draw: st.DrawFn) -> Targeting:
    platforms = draw(st.none() | st.lists(st.sampled_from(PLATFORMS), min_size=1, unique=True).map(tuple))
    low, high = draw(st.none() | versions), draw(st.none() | versions)
    if low is not None and high is not None and parse_version(low) > parse_version(high):
        low, high = high, low
    return Targeting(platforms=platforms, app_version_min=low, app_version_max=high)


rollouts = st.builds(Rollout, versions, percents, targetings())
#: A device as a release sees it: id, platform and host-app version (either may be unknown or junk).
devices = st.tuples(
    st.text(min_size=1, max_size=16),
    st.sampled_from((None, *PLATFORMS)),
    st.none() | versions | st.just("not-a-version"),
)


def _release(**fields: object) -> Release:
    base: dict[str, object] = {"scene": "watch_time", "channel": "stable", "release_id": 1, "package_version": "9.9.9"}
    return Release(**{**base, **fields})  # type: ignore[arg-type]


def _versions(release: Release, fleet: list[tuple[str, str | None, str | None]]) -> list[str | None]:
    return [release.version_for(d, platform=p, app_version=a) for d, p, a in fleet]


@settings(max_examples=200, deadline=None)
@given(low=percents, high=percents)
def test_percent_to_buckets_is_monotone_from_no_bucket_to_all(low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    assert 0 == percent_to_buckets(0.0) <= percent_to_buckets(low) <= percent_to_buckets(high)
    assert percent_to_buckets(high) <= percent_to_buckets(100.0) == BUCKETS


@settings(max_examples=30, deadline=None)
@given(prefix=st.text(max_size=12), percent=percents, scene=st.sampled_from(["watch_time", "other_scene"]))
def test_a_rollout_reaches_about_its_share_of_any_fleet(prefix: str, percent: float, scene: str) -> None:
    fleet = [f"{prefix}{i}" for i in range(2_000)]
    buckets = [rollout_bucket(d, scene) for d in fleet]
    release = _release(scene=scene, rollout_percent=percent, previous_version="1.0.0")
    reached = sum(v == "9.9.9" for v in _versions(release, [(d, None, None) for d in fleet]))

    assert all(0 <= b < BUCKETS for b in buckets)
    assert buckets == [rollout_bucket(d, scene) for d in fleet]  # stable
    # 2,000 devices: the binomial's standard deviation is at most 1.2 points, so 6 points is 5 of them
    assert abs(reached / len(fleet) - percent / 100.0) <= 0.06


@settings(max_examples=60, deadline=None)
@given(
    narrow=percents,
    wider=percents,
    targeting=targetings(),
    fleet=st.lists(devices, min_size=1, max_size=40),
)
def test_widening_a_rollout_keeps_every_device_it_reached(
    narrow: float, wider: float, targeting: Targeting, fleet: list[tuple[str, str | None, str | None]]
) -> None:
    narrow, wider = min(narrow, wider), max(narrow, wider)
    widen = {"targeting": targeting, "previous_version": "1.0.0"}
    before = _versions(_release(release_id=1, rollout_percent=narrow, **widen), fleet)
    after = _versions(_release(release_id=2, rollout_percent=wider, **widen), fleet)  # a widen is a new release

    for was, now in zip(before, after, strict=True):
        assert was in ("9.9.9", "1.0.0") and now in ("9.9.9", "1.0.0")  # never the default policy
        assert was != "9.9.9" or now == "9.9.9"


@settings(max_examples=60, deadline=None)
@given(
    stack=st.lists(rollouts, max_size=MAX_EARLIER_ROLLOUTS + 4),
    floor=st.none() | versions,
    fleet=st.lists(devices, min_size=1, max_size=30),
)
def test_layered_rollouts_decide_every_device_as_the_whole_stack_did(
    stack: list[Rollout], floor: str | None, fleet: list[tuple[str, str | None, str | None]]
) -> None:
    kept, new_floor = layered(stack, floor)
    # paused: the release's own rollout reaches nobody, so only the layers underneath decide
    before = _versions(_release(paused=True, earlier=tuple(stack), previous_version=floor), fleet)
    after = _versions(_release(paused=True, earlier=kept, previous_version=new_floor), fleet)

    assert len(kept) <= MAX_EARLIER_ROLLOUTS
    rest = iter(stack)
    assert all(any(r == s for s in rest) for r in kept)  # a subsequence of the stack, newest first
    for was, now in zip(before, after, strict=True):
        # only past MAX_EARLIER_ROLLOUTS may the oldest layers go, and their devices fall to the floor
        assert now == was or (len(kept) == MAX_EARLIER_ROLLOUTS and now == new_floor)
        if floor is not None:
            assert now is not None  # a rollout never sends a device to the default policy


@settings(max_examples=50, deadline=None)
@given(
    version=versions,
    percent=percents,
    previous=st.none() | versions,
    targeting=targetings(),
    paused=st.booleans(),
    kill_switch=st.booleans(),
    earlier=st.lists(rollouts, max_size=MAX_EARLIER_ROLLOUTS),
    release_id=st.integers(0, 2**53),
)
def test_a_release_document_reads_back_as_written(
    version: str,
    percent: float,
    previous: str | None,
    targeting: Targeting,
    paused: bool,
    kill_switch: bool,
    earlier: list[Rollout],
    release_id: int,
) -> None:
    release = _release(
        package_version=version,
        rollout_percent=percent,
        previous_version=previous,
        targeting=targeting,
        paused=paused,
        kill_switch=kill_switch,
        earlier=tuple(earlier),
        release_id=release_id,
    )
    assert Release.from_json(release.to_json()) == release


#: What a broken or hostile document may hold where a field belongs: any JSON value, and
#: numbers past what a float takes.
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
) | st.integers(min_value=2**1024, max_value=2**1100)


@st.composite
def broken_documents(draw: st.DrawFn) -> Any:
    raw: dict[str, Any] = json.loads(_release(previous_version="1.0.0", earlier=(Rollout("1.0.0", 50.0),)).to_json())
    for key in draw(st.lists(st.sampled_from(sorted(raw)), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            del raw[key]
        else:
            raw[key] = draw(junk)
    earlier = raw.get("earlier")
    # Junk may have replaced the list with one of junk: only a surviving rollout object is edited.
    if draw(st.booleans()) and isinstance(earlier, list) and earlier and isinstance(earlier[0], dict):
        earlier[0][draw(st.sampled_from(["package_version", "rollout_percent", "targeting"]))] = draw(junk)
    return raw


@settings(max_examples=200, deadline=None)
@given(raw=broken_documents())
def test_any_release_document_parses_or_is_a_release_error(raw: Any) -> None:
    try:
        Release.from_json(json.dumps(raw).encode())
    except ReleaseError:
        pass
