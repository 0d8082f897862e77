"""Properties of the playback model for any feed, link, player and policy Hypothesis can draw.

The examples in test_simulation_playback.py pin hand-computed cases; these hold for every draw:
bytes (what was watched was downloaded, nothing past the file or past what the link carried, no
preload beyond what a decision asked), time (every lane's clock is its waits, stalls and watching, up to one step per video),
the policy contract (one decision per video, one end per session), lanes independent of each
other, and the fixed preload against none.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pitahaya.client_runtime import PreloadPlan, View
from pitahaya.simulation import (
    FixedPolicy,
    OraclePolicy,
    PlaybackConfig,
    PlaybackLog,
    PlayDecision,
    Session,
    Trace,
    play,
)
from pitahaya.simulation.playback import buffer_target, limit_in_force
from pitahaya.simulation.policies import play_decision

#: Slack of a byte comparison: float sums of byte counts, and the playhead's own tolerance.
BYTE_SLACK = 1e-3
#: ... relative to the file size.
RELATIVE_SLACK = 1e-9


@st.composite
def feeds(draw: st.DrawFn) -> list[list[Session]]:
    """1-3 lanes of 1-2 sessions of 1-3 views: 1-12 s videos at 0.3-2 Mbps, watched 0-1.5x (replays)."""
    lanes = []
    for r in range(draw(st.integers(1, 3))):
        lane = []
        for s in range(draw(st.integers(1, 2))):
            views = []
            for i in range(draw(st.integers(1, 3))):
                duration = draw(st.floats(1.0, 12.0))
                watch = draw(st.sampled_from([0.0, duration]) | st.floats(0.0, 1.5 * duration))
                bitrate = draw(st.floats(300_000, 2_000_000))
                size = max(1, round(duration * bitrate / 8))
                views.append(View(f"u{r}", f"v{r}-{s}-{i}", 1_000.0 * s + 20.0 * i, duration, watch, size))
            lane.append(Session(f"u{r}", tuple(views)))
        lanes.append(lane)
    return lanes


@st.composite
def links(draw: st.DrawFn, n: int) -> list[Trace]:
    """``n`` traces of 1-6 samples of 0.3-8 Mbps, 0.25-1 s apart."""
    return [
        Trace(
            f"drawn/{r}",
            "mixed",
            np.array(draw(st.lists(st.floats(300_000, 8_000_000), min_size=1, max_size=6))),
            draw(st.sampled_from([0.25, 0.5, 1.0])),
        )
        for r in range(n)
    ]


players = st.builds(
    PlaybackConfig,
    dt_s=st.sampled_from([0.1, 0.2, 0.5]),
    startup_s=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    buffer_ahead_s=st.sampled_from([1.0, 4.0, 10.0]),
    lookahead=st.integers(1, 4),
    meter_s=st.sampled_from([0.5, 2.0]),
)
decisions = st.builds(
    PlayDecision,
    preload_bytes=st.lists(st.integers(0, 3_000_000), max_size=5).map(tuple),
    watch_limit_s=st.just(math.inf) | st.floats(0.0, 20.0),
    buffer_floor_s=st.floats(0.0, 5.0),
    min_throughput_bps=st.floats(0.0, 4_000_000),
    floor_rate_s=st.just(0.0) | st.floats(0.0, 8.0),
)


class Scripted:
    """Answers drawn decisions in turn, and records what it was asked and what each video was promised."""

    name = "scripted"

    def __init__(self, script: Sequence[PlayDecision], lookahead: int) -> None:
        self.script, self.lookahead = script, lookahead
        self.lanes: Sequence[Sequence[Session]] = ()
        self.decided: list[tuple[int, int, int]] = []
        self.ended: list[tuple[int, int]] = []
        self.asked: dict[tuple[int, int, int], int] = {}  # (lane, session, index) -> most preload bytes asked

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        self.lanes = lanes

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        decision = self.script[len(self.decided) % len(self.script)]
        self.decided.append((lane, session, index))
        upcoming = len(self.lanes[lane][session].views) - index - 1
        for k, asked in enumerate(decision.preload_bytes[: min(self.lookahead, upcoming)]):
            key = (lane, session, index + 1 + k)
            self.asked[key] = max(self.asked.get(key, 0), asked)
        return decision

    def end(self, lane: int, session: int) -> None:
        self.ended.append((lane, session))


def _videos(lanes: Sequence[Sequence[Session]]) -> list[tuple[int, int, int, View]]:
    """(lane, session within the lane, index, view), in the log's row order."""
    return [
        (r, s, i, v) for r, lane in enumerate(lanes) for s, sess in enumerate(lane) for i, v in enumerate(sess.views)
    ]


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[list[Session]], list[Trace], PlaybackConfig, list[PlayDecision]]:
    lanes = draw(feeds())
    return lanes, draw(links(len(lanes))), draw(players), draw(st.lists(decisions, min_size=1, max_size=4))


@settings(max_examples=60, deadline=None)
@given(run=runs())
def test_bytes_what_was_watched_was_downloaded_and_no_preload_exceeds_its_ask(run) -> None:  # type: ignore[no-untyped-def]
    lanes, traces, config, script = run
    policy = Scripted(script, config.lookahead)
    log = play(lanes, traces, policy, config)
    slack = BYTE_SLACK + RELATIVE_SLACK * log.size_bytes
    assert np.all(log.downloaded_bytes >= log.needed_bytes - slack)
    assert np.all(log.downloaded_bytes <= log.size_bytes + slack)
    assert np.all(log.preloaded_bytes <= log.downloaded_bytes)
    for r, trace in enumerate(traces):  # no lane downloads more than its link carried, step by step
        steps = round(log.sim_time_s[r] / config.dt_s)
        samples = (np.arange(steps) * config.dt_s / trace.step_s).astype(np.int64) % len(trace.bandwidth_bps)
        carried = float(np.sum(trace.bandwidth_bps[samples] / 8.0 * config.dt_s))
        assert log.downloaded_bytes[log.lane == r].sum() <= carried * (1 + RELATIVE_SLACK) + BYTE_SLACK
    for row, (r, s, i, view) in enumerate(_videos(lanes)):
        promised = min(view.size_bytes, policy.asked.get((r, s, i), 0))
        assert log.preloaded_bytes[row] <= promised + slack[row], (r, s, i)
        # A preload that covers the start-up bytes starts the video at once.
        if log.preloaded_bytes[row] >= min(view.size_bytes, config.startup_s * (view.size_bytes / view.duration_s)):
            assert log.wait_s[row] == 0.0, (r, s, i)


@settings(max_examples=60, deadline=None)
@given(run=runs())
def test_time_every_lane_clock_is_its_waits_stalls_and_watching(run) -> None:  # type: ignore[no-untyped-def]
    lanes, traces, config, script = run
    log = play(lanes, traces, Scripted(script, config.lookahead), config)
    assert np.all(log.wait_s >= 0) and np.all(log.stall_s >= 0) and np.all(log.stalls >= 0)
    assert np.array_equal(log.stall_s > 0, log.stalls > 0)  # stall time only after a stall, and each stall takes some
    for r in range(len(lanes)):
        mine = log.lane == r
        accounted = float(np.sum(log.wait_s[mine] + log.stall_s[mine] + log.played_s[mine]))
        clock = float(log.sim_time_s[r])
        # Each step is spent waiting, stalling or playing; only a video's last step may end idle.
        assert -1e-6 * (1.0 + clock) <= clock - accounted <= int(mine.sum()) * config.dt_s + 1e-6 * (1.0 + clock)


@settings(max_examples=40, deadline=None)
@given(run=runs())
def test_the_policy_decides_once_per_video_in_play_order_and_hears_every_session_end(run) -> None:  # type: ignore[no-untyped-def]
    lanes, traces, config, script = run
    policy = Scripted(script, config.lookahead)
    play(lanes, traces, policy, config)
    for r, lane in enumerate(lanes):
        mine = [(s, i) for lane_, s, i in policy.decided if lane_ == r]
        assert mine == [(s, i) for s, sess in enumerate(lane) for i in range(len(sess.views))]
        assert [s for lane_, s in policy.ended if lane_ == r] == list(range(len(lane)))


def _lane_rows(log: PlaybackLog, r: int) -> dict[str, np.ndarray]:
    mine = log.lane == r
    return {f: getattr(log, f)[mine] for f in ("downloaded_bytes", "preloaded_bytes", "wait_s", "stall_s", "stalls")}


@settings(max_examples=40, deadline=None)
@given(
    lanes=feeds(),
    data=st.data(),
    config=players,
    policy=st.builds(FixedPolicy, st.integers(0, 4), st.integers(1, 2_000_000))
    | st.builds(OraclePolicy, st.floats(0.5, 2.0)),
)
def test_a_lane_plays_the_same_alone_as_beside_others(lanes, data, config, policy) -> None:  # type: ignore[no-untyped-def]
    traces = data.draw(links(len(lanes)))
    offsets = data.draw(st.lists(st.floats(0.0, 30.0), min_size=len(lanes), max_size=len(lanes)))
    together = play(lanes, traces, policy, config, offsets)
    for r in range(len(lanes)):
        alone = play([lanes[r]], [traces[r]], policy, config, [offsets[r]])
        assert alone.sim_time_s[0] == together.sim_time_s[r]
        for field, values in _lane_rows(together, r).items():
            assert np.array_equal(values, _lane_rows(alone, 0)[field]), field


@settings(max_examples=40, deadline=None)
@given(
    lanes=feeds(),
    data=st.data(),
    config=players.filter(lambda c: c.startup_s > 0),
    count=st.integers(1, 4),
    size=st.integers(1, 2_000_000),
)
def test_the_fixed_preload_against_none(lanes, data, config, count, size) -> None:  # type: ignore[no-untyped-def]
    traces = data.draw(links(len(lanes)))
    fixed = play(lanes, traces, FixedPolicy(count, size), config)
    none = play(lanes, traces, FixedPolicy(0), config)
    assert np.all(none.preloaded_bytes == 0)
    assert np.all(fixed.preloaded_bytes <= np.minimum(size, fixed.size_bytes) + BYTE_SLACK)
    # Preloads only get what the playing video leaves: every lane's first video plays the same.
    for r in range(len(lanes)):
        first_fixed, first_none = np.flatnonzero(fixed.lane == r)[0], np.flatnonzero(none.lane == r)[0]
        for field in ("downloaded_bytes", "wait_s", "stall_s", "stalls"):
            assert getattr(fixed, field)[first_fixed] == getattr(none, field)[first_none], (r, field)
    # Without a preload every video waits for its start-up bytes; with one, no more videos do.
    startup_bytes = np.minimum(none.size_bytes, config.startup_s * none.bitrate_bps / 8)
    assert np.all(none.wait_s[startup_bytes > BYTE_SLACK] > 0)
    assert np.sum(fixed.wait_s > 0) <= np.sum(none.wait_s > 0)


@settings(max_examples=300, deadline=None)
@given(
    played_s=st.floats(0.0, 120.0),
    cap_s=st.none() | st.floats(0.0, 120.0),
    floor_s=st.floats(0.0, 10.0),
    floor_rate_s=st.just(0.0) | st.floats(0.0, 10.0),
    guard=st.just(0.0) | st.floats(0.0, 4.0),
    bitrate_bps=st.floats(100_000, 8_000_000),
    throughput_bps=st.just(0.0) | st.floats(1.0, 50_000_000),
    full_s=st.sampled_from([4.0, 10.0, 30.0]),
    steps=st.lists(st.floats(0.0, 60.0), max_size=3),
)
def test_the_player_buffers_what_the_device_plan_says(  # type: ignore[no-untyped-def]
    played_s, cap_s, floor_s, floor_rate_s, guard, bitrate_bps, throughput_bps, full_s, steps
) -> None:
    """The simulator's vectorized buffer target is the device's `PreloadPlan.buffer_target_s`, capped at
    the player's own buffer (None: the player's own), for any playhead, link, guards and further caps."""
    assume(floor_s <= full_s)
    then = tuple(itertools.accumulate((cap_s or 0.0) + 1e-6 + step for step in steps)) if cap_s is not None else ()
    plan = PreloadPlan((), cap_s, floor_s, guard * bitrate_bps, floor_rate_s, bitrate_bps, then)
    device = plan.buffer_target_s(played_s, throughput_bps)
    decision = play_decision(plan, [], 0, 1.0, 1.0, 0)
    limits = np.array([[decision.watch_limit_s, *decision.watch_then_s, math.inf]])

    def one(value: float) -> np.ndarray:
        return np.array([value])

    player = buffer_target(
        one(played_s),
        limit_in_force(limits, one(played_s)),
        one(decision.buffer_floor_s),
        one(decision.floor_rate_s),
        one(decision.min_throughput_bps / 8.0),
        one(throughput_bps / 8.0),
        one(bitrate_bps / 8.0),
        full_s,
    )[0]
    if device is None:
        assert player == full_s
    elif all(abs(played_s - cap) > 1e-9 for cap in (cap_s, *then)):  # the player's time tolerance: a
        # playhead an ulp short of a cap has reached it
        assert player == pytest.approx(min(full_s, device), rel=1e-9)
