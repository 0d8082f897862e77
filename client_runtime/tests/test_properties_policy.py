"""Properties of the preload planner: its floors, caps, count and buffer guards hold for any
predictions and knobs, across a run of smoothed decisions, not only the cases test_policy.py pins."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pitahaya.client_runtime import Candidate, PolicyKnobs, PreloadPlan, PreloadPlanner, fixed_plan
from pitahaya.client_runtime.policy import DEFAULT_POLICY, MAX_SMOOTHING
from pitahaya.client_runtime.decisions import MAX_WATCH_S

candidates = st.lists(
    st.builds(
        Candidate,
        st.text(min_size=1, max_size=6),
        st.floats(0.1, 3_600.0),  # seconds
        st.integers(1, 200_000_000),  # bytes
    ),
    max_size=8,
    unique_by=lambda c: c.video_id,
)
#: What a package may predict once the runtime clamped it (the planner also takes negatives as 0),
#: mostly at the scale of a swipe so that paces around the horizon are common.
watch_times = st.floats(-10.0, 120.0) | st.floats(-10.0, MAX_WATCH_S)


@st.composite
def knobs(draw: st.DrawFn) -> PolicyKnobs:
    """Any policy `PolicyKnobs.from_policy` accepts: floors below caps, counts and windows in range."""
    min_count = draw(st.integers(0, 6))
    min_bytes = draw(st.integers(0, 2_000_000))
    buffer_floor_s = draw(st.floats(0.0, 30.0))
    policy = {
        "min_count": min_count,
        "max_count": draw(st.integers(min_count, 10)),
        "count": min_count,
        "min_bytes": min_bytes,
        "max_bytes": draw(st.integers(min_bytes, 4_000_000)),
        "startup_s": draw(st.floats(0.0, 10.0)),
        "safety": draw(st.floats(0.1, 4.0)),
        "horizon_s": draw(st.floats(0.0, 60.0)),
        "smoothing": draw(st.integers(1, MAX_SMOOTHING)),
        "buffer_safety": draw(st.floats(0.01, 4.0)),
        "buffer_floor_s": buffer_floor_s,
        "buffer_max_s": draw(st.floats(buffer_floor_s, 600.0)),
        "buffer_min_throughput": draw(st.floats(0.0, 8.0)),
    }
    return PolicyKnobs.from_policy(policy)


@st.composite
def decisions(draw: st.DrawFn) -> tuple[list[Candidate], list[float], Candidate | None, float | None]:
    """One decision: candidates, one prediction each, and maybe the playing video's remaining watch."""
    cands = draw(candidates)
    watch = draw(st.lists(watch_times, min_size=len(cands), max_size=len(cands)))
    playing = draw(st.none() | st.sampled_from(cands)) if cands else None
    remaining = draw(st.none() | st.floats(-60.0, MAX_WATCH_S))
    return cands, watch, playing, remaining


def _check_items(plan: PreloadPlan, cands: list[Candidate], knobs: PolicyKnobs) -> None:
    assert len(plan.items) <= min(knobs.max_count, len(cands))
    assert [item.video_id for item in plan.items] == [c.video_id for c in cands[: len(plan.items)]]  # in play order
    for item, cand in zip(plan.items, cands, strict=False):
        cap = min(cand.size_bytes, knobs.max_bytes)
        floor = max(knobs.min_bytes, knobs.startup_s * cand.size_bytes / cand.duration_s)
        assert isinstance(item.bytes, int)
        assert math.floor(min(cap, floor)) <= item.bytes <= cap


@settings(max_examples=100, deadline=None)
@given(knobs=knobs(), run=st.lists(decisions(), min_size=1, max_size=5))
def test_every_plan_is_within_its_floors_and_caps_across_smoothed_decisions(
    knobs: PolicyKnobs, run: list[tuple[list[Candidate], list[float], Candidate | None, float | None]]
) -> None:
    planner = PreloadPlanner()
    for cands, watch, playing, remaining in run:
        plan = planner.plan(cands, watch, knobs, playing=playing, playing_remaining_s=remaining)

        _check_items(plan, cands, knobs)
        if playing is None or remaining is None or remaining <= 0.0:
            # nothing predicted for the playing video, or already outlived: the player's own buffering
            assert (plan.buffer_ahead_s, plan.buffer_floor_s, plan.min_throughput_bps) == (None, 0.0, 0.0)
        else:
            assert plan.buffer_ahead_s is not None
            assert 0.0 <= plan.buffer_ahead_s <= knobs.buffer_max_s
            assert plan.buffer_ahead_s <= remaining * knobs.buffer_safety
            assert plan.buffer_floor_s == knobs.buffer_floor_s  # the floor the player keeps under the cap
            bitrate_bps = 8.0 * playing.size_bytes / playing.duration_s
            assert math.isclose(plan.min_throughput_bps, knobs.buffer_min_throughput * bitrate_bps)


@settings(max_examples=100, deadline=None)
@given(knobs=knobs(), cands=candidates, data=st.data())
def test_the_count_is_the_videos_reached_within_the_horizon_between_min_and_max(
    knobs: PolicyKnobs, cands: list[Candidate], data: st.DataObject
) -> None:
    watch = data.draw(st.lists(watch_times, min_size=len(cands), max_size=len(cands)))
    planner = PreloadPlanner()
    most = min(knobs.max_count, len(cands))
    for _ in range(3):  # the same decision again and again: smoothing an equal count keeps it
        count = len(planner.plan(cands, watch, knobs).items)
        assert min(knobs.min_count, len(cands)) <= count <= most
        if count > knobs.min_count:  # the last one is reached within the horizon
            assert sum(max(w, 0.0) for w in watch[: count - 1]) < knobs.horizon_s
        if knobs.min_count <= count < most:  # the next one is not
            assert sum(max(w, 0.0) for w in watch[:count]) >= knobs.horizon_s


@settings(max_examples=100, deadline=None)
@given(cands=candidates)
def test_the_default_policy_is_at_most_its_count_of_its_bytes(cands: list[Candidate]) -> None:
    plan = fixed_plan(cands)
    assert len(plan.items) == min(DEFAULT_POLICY["fixed_count"], len(cands))
    for item, cand in zip(plan.items, cands, strict=False):
        assert item.video_id == cand.video_id
        assert item.bytes == min(DEFAULT_POLICY["fixed_bytes"], cand.size_bytes)
    assert plan.buffer_ahead_s is None
