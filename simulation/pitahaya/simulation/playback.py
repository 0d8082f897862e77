"""The playback model: one swipe feed per lane, bandwidth shared by the playing video and the preloads.

All lanes advance in lockstep, one time step at a time, as NumPy arrays (a lane is one device
playing its sessions back to back over its own bandwidth trace), so a step costs the same few
array operations for one lane or a thousand. Policies are asked only when a user swipes.

One step of ``dt_s`` seconds, for every lane:

1. **Start / resume.** A video that is waiting starts once ``startup_s`` seconds of it (or the
   whole file) are downloaded; a stalled video resumes once as much is buffered ahead of the
   playhead. A video that could not start the moment it became current is a *slow start*.
2. **Download** ``bandwidth x dt`` bytes, in priority order: the playing (or waiting) video up
   to its buffer-ahead target, then the preload targets of the next videos *in play order*,
   each filled before the next gets a byte. Buffer-ahead target: ``max(floor, min(buffer_ahead_s,
   watch_limit - position))`` seconds of content ahead of the playhead, so a policy that expects
   the user to leave early stops buffering what will never be watched; but the player's full
   ``buffer_ahead_s`` once the playhead passes the limit (the user outlived the prediction) or
   while its bandwidth meter (an exponential average of the link's speed over ``meter_s``)
   reads less than the decision's ``min_throughput_bps``.
3. **Play** up to ``dt_s`` seconds; running out of buffered content mid-step is a *stall* (the
   rest of the step is stall time). A waiting step counts as start-up wait, a stalled step as
   stall time. Replays past the end of a video need no more bytes.
4. **Swipe** when the user's watch time is reached: the next video becomes current (its bytes
   so far are its *preload*), and the policy decides again.

Events land on step boundaries, so results converge as ``dt_s`` shrinks; a test pins that
halving the default step moves no headline figure by more than 1%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pitahaya.training.simulation.networks import Trace
from pitahaya.training.simulation.sessions import Session

_WAITING, _PLAYING, _STALLED = 0, 1, 2
#: A file this close to complete is complete (float sums of byte counts may miss by an ulp).
_BYTE_TOLERANCE = 1e-3
#: ... and so are times this close (seconds).
_TIME_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PlaybackConfig:
    """Knobs of the player, with units in their names.

    Attributes:
        dt_s: Simulation time step.
        startup_s: Seconds of a video that must be downloaded before it starts (or resumes).
        buffer_ahead_s: How far ahead of the playhead the player buffers the playing video.
        lookahead: Upcoming videos a decision may set preload targets for.
        meter_s: Time constant of the player's bandwidth meter.
    """

    dt_s: float = 0.05
    startup_s: float = 1.0
    buffer_ahead_s: float = 10.0
    lookahead: int = 5
    meter_s: float = 2.0

    def __post_init__(self) -> None:
        if not (
            self.dt_s > 0
            and self.startup_s >= 0
            and self.buffer_ahead_s > 0
            and self.lookahead >= 1
            and self.meter_s > 0
        ):
            raise ValueError(
                "need dt_s > 0, startup_s >= 0, buffer_ahead_s > 0, lookahead >= 1 and meter_s > 0"
            )


@dataclass(frozen=True, slots=True)
class PlayDecision:
    """What a policy wants when a video becomes current.

    Attributes:
        preload_bytes: Bytes to have of each next video of the session, in play order.
        watch_limit_s: Seconds of the playing video worth buffering (its predicted watch time
            times the margin); ``inf`` buffers the full ``buffer_ahead_s``, and so does a
            playhead past it.
        buffer_floor_s: Seconds always kept buffered ahead of the playhead, whatever the limit.
        min_throughput_bps: The limit holds only while the bandwidth meter reads at least this.
    """

    preload_bytes: tuple[int, ...] = ()
    watch_limit_s: float = math.inf
    buffer_floor_s: float = 0.0
    min_throughput_bps: float = 0.0


class Policy(Protocol):
    """Decides preloads and the playing video's buffering; asked once per video that becomes current."""

    name: str

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        """Called once before the first step with every lane's sessions."""

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        """Video ``index`` of session ``session`` of ``lane`` just became current."""

    def end(self, lane: int, session: int) -> None:
        """The last video of that session finished."""


@dataclass(frozen=True, eq=False)
class PlaybackLog:
    """Per-video outcome of a run; row j is one video of one session.

    Attributes:
        lane: Lane of each video.
        session: Global session number of each video (order of the lanes, then of their sessions).
        size_bytes: File size.
        needed_bytes: Bytes the user actually played (``min(watch, duration) x byte rate``).
        preloaded_bytes: Bytes downloaded before the video became current.
        downloaded_bytes: Bytes downloaded in total.
        wait_s: Start-up wait (0 when enough was preloaded).
        stall_s: Stall time after the start.
        stalls: Number of stalls.
        played_s: Seconds of content played (the watch time).
        bitrate_bps: Average bitrate of the file.
        sim_time_s: Simulated wall time of each lane.
    """

    lane: np.ndarray
    session: np.ndarray
    size_bytes: np.ndarray
    needed_bytes: np.ndarray
    preloaded_bytes: np.ndarray
    downloaded_bytes: np.ndarray
    wait_s: np.ndarray
    stall_s: np.ndarray
    stalls: np.ndarray
    played_s: np.ndarray
    bitrate_bps: np.ndarray
    sim_time_s: np.ndarray

    def __len__(self) -> int:
        return len(self.lane)


def play(
    lanes: Sequence[Sequence[Session]],
    traces: Sequence[Trace],
    policy: Policy,
    config: PlaybackConfig = PlaybackConfig(),
    offsets_s: Sequence[float] | None = None,
) -> PlaybackLog:
    """Play every lane's sessions back to back over its trace and account bytes, waits and stalls.

    Args:
        lanes: Per lane, its sessions in play order (a lane is one device).
        traces: Per lane, its bandwidth trace (looped when the lane outlasts it).
        policy: Who decides preloads and buffering.
        config: Player knobs.
        offsets_s: Per lane, where in its trace playback starts (default 0).

    Returns:
        One row per video played.

    Raises:
        ValueError: lanes and traces differ in number, or a lane has no views.
    """
    if len(lanes) != len(traces):
        raise ValueError(f"{len(lanes)} lanes but {len(traces)} traces")
    if any(not s.views for lane in lanes for s in lane) or any(
        not lane for lane in lanes
    ):
        raise ValueError(
            "every lane needs at least one session and every session at least one view"
        )
    n_lanes = len(lanes)
    offsets = (
        np.zeros(n_lanes)
        if offsets_s is None
        else np.asarray(offsets_s, dtype=np.float64)
    )
    dt, look = config.dt_s, config.lookahead

    # Flatten each lane's sessions; column n_max is a sink for out-of-range window slots.
    counts = np.array([sum(len(s.views) for s in lane) for lane in lanes])
    n_max = int(counts.max()) if n_lanes else 0
    shape = (n_lanes, n_max + 1)
    duration, size, watch = np.ones(shape), np.zeros(shape), np.zeros(shape)
    session_of = np.full(shape, -1, dtype=np.int64)
    local_index = np.zeros(shape, dtype=np.int64)
    session_last = np.zeros(
        shape, dtype=np.int64
    )  # index of the last video of each video's session
    number = 0
    for r, lane in enumerate(lanes):
        j = 0
        for sess in lane:
            k = len(sess.views)
            duration[r, j : j + k] = [v.duration_s for v in sess.views]
            size[r, j : j + k] = [v.size_bytes for v in sess.views]
            watch[r, j : j + k] = [v.watch_s for v in sess.views]
            session_of[r, j : j + k] = number
            local_index[r, j : j + k] = np.arange(k)
            session_last[r, j : j + k] = j + k - 1
            number += 1
            j += k
    rate = size / duration  # 0 in the sink column
    threshold = np.minimum(size, config.startup_s * rate)
    needed = np.minimum(size, rate * np.minimum(watch, duration))

    # Bandwidth samples (bytes/s), padded by tiling to one width.
    width = max(len(t.bandwidth_bps) for t in traces)
    bw = np.empty((n_lanes, width))
    trace_len = np.array([len(t.bandwidth_bps) for t in traces])
    for r, t in enumerate(traces):
        bw[r] = np.resize(np.asarray(t.bandwidth_bps, dtype=np.float64) / 8.0, width)
    trace_step = np.array([t.step_s for t in traces])
    rows = np.arange(n_lanes)

    def link_speed(t: float) -> np.ndarray:
        """Each lane's link speed (bytes/s) at simulated time ``t``."""
        return bw[rows, ((t + offsets) / trace_step).astype(np.int64) % trace_len]

    downloaded = np.zeros(shape)
    target = np.zeros(shape)  # preload targets
    preloaded = np.zeros(shape)
    wait = np.zeros(shape)
    stall = np.zeros(shape)
    stalls = np.zeros(shape, dtype=np.int64)
    cur = np.zeros(n_lanes, dtype=np.int64)
    pos = np.zeros(n_lanes)
    state = np.full(n_lanes, _WAITING)
    limit = np.full(n_lanes, math.inf)
    floor = np.zeros(n_lanes)
    min_meter = np.zeros(n_lanes)  # bytes/s
    meter = link_speed(0.0)
    meter_keep = math.exp(-dt / config.meter_s)
    done = counts == 0
    sim_time = np.zeros(n_lanes)
    window = np.arange(1, look + 1)
    session_counter = [0] * n_lanes

    policy.begin(lanes)

    def decide(r: int) -> None:
        j = int(cur[r])
        preloaded[r, j] = downloaded[r, j]
        decision = policy.decide(r, session_counter[r], int(local_index[r, j]))
        last = int(session_last[r, j])
        ahead = decision.preload_bytes[: min(look, last - j)]
        target[r, j + 1 : j + 1 + look] = 0.0
        if ahead:
            target[r, j + 1 : j + 1 + len(ahead)] = np.minimum(
                ahead, size[r, j + 1 : j + 1 + len(ahead)]
            )
        limit[r], floor[r] = decision.watch_limit_s, decision.buffer_floor_s
        min_meter[r] = decision.min_throughput_bps / 8.0

    for r in range(n_lanes):
        decide(r)

    step = 0
    while not done.all():
        active = ~done
        t = step * dt
        c = np.minimum(cur, n_max)
        d_c, rate_c, size_c, dur_c = (
            downloaded[rows, c],
            rate[rows, c],
            size[rows, c],
            duration[rows, c],
        )
        rate_c = np.where(
            rate_c > 0, rate_c, 1.0
        )  # finished lanes sit on the empty sink column
        # 1. start / resume
        starting = (
            active & (state == _WAITING) & (d_c >= threshold[rows, c] - _BYTE_TOLERANCE)
        )
        ahead_s = np.where(d_c >= size_c - _BYTE_TOLERANCE, np.inf, d_c / rate_c - pos)
        resuming = (
            active
            & (state == _STALLED)
            & (ahead_s >= np.minimum(config.startup_s, dur_c - pos) - _TIME_TOLERANCE)
        )
        state[starting | resuming] = _PLAYING
        # 2. download: playing video first, then the preload window in order
        speed = np.where(active, link_speed(t), 0.0)
        budget = speed * dt
        d_before = d_c
        meter = meter_keep * meter + (1.0 - meter_keep) * speed
        capped = (pos < limit) & (meter >= min_meter)
        buffer_s = np.where(
            capped, np.maximum(floor, np.minimum(config.buffer_ahead_s, limit - pos)), config.buffer_ahead_s
        )
        want = rate_c * (np.minimum(pos, dur_c) + buffer_s)
        want = np.where(state == _WAITING, np.maximum(want, threshold[rows, c]), want)
        resume_at = rate_c * (np.minimum(pos, dur_c) + config.startup_s)
        want = np.minimum(
            size_c, np.where(state == _STALLED, np.maximum(want, resume_at), want)
        )
        give = np.clip(want - d_c, 0.0, budget)
        downloaded[rows, c] += give
        budget -= give
        cols = c[:, None] + window
        cols = np.where(cols <= session_last[rows, c][:, None], cols, n_max)
        deficit = np.clip(
            target[rows[:, None], cols] - downloaded[rows[:, None], cols], 0.0, None
        )
        deficit[cols == n_max] = 0.0
        before = np.cumsum(deficit, axis=1) - deficit
        downloaded[rows[:, None], cols] += np.clip(
            budget[:, None] - before, 0.0, deficit
        )
        # 1b. a video whose start (or resume) bytes arrived during this step plays from that moment:
        # the playing video is downloaded first, at the full speed, so the moment is deficit / speed.
        d_c = downloaded[rows, c]
        ready_at = np.minimum(np.where(state == _WAITING, threshold[rows, c], resume_at), size_c)
        late = active & (state != _PLAYING) & (d_c >= ready_at - _BYTE_TOLERANCE)
        offset = np.where(late, np.clip((ready_at - d_before) / np.maximum(speed, 1e-12), 0.0, dt), 0.0)
        wait[rows, c] += np.where(late & (state == _WAITING), offset, 0.0)
        stall[rows, c] += np.where(late & (state == _STALLED), offset, 0.0)
        state[late] = _PLAYING
        # 3. play for what is left of the step
        playing = active & (state == _PLAYING)
        span = dt - offset
        avail = np.where(d_c >= size_c - _BYTE_TOLERANCE, np.inf, d_c / rate_c - pos)
        remaining = watch[rows, c] - pos
        played = np.where(playing, np.clip(np.minimum(remaining, avail), 0.0, span), 0.0)
        starved = playing & (avail < np.minimum(span, remaining) - _TIME_TOLERANCE)
        pos += played
        state[starved] = _STALLED
        stalls[rows[starved], c[starved]] += 1
        stall[rows, c] += np.where(starved, span - played, 0.0)
        stall[rows, c] += np.where(active & (state == _STALLED) & ~starved & ~late, dt, 0.0)
        wait[rows, c] += np.where(active & (state == _WAITING), dt, 0.0)
        step += 1
        sim_time[active] = step * dt
        # 4. swipe
        for r in np.flatnonzero(playing & (pos >= watch[rows, c] - 1e-9)):
            j = int(cur[r])
            if j == session_last[r, j]:
                policy.end(r, session_counter[r])
                session_counter[r] += 1
            cur[r], pos[r], state[r] = j + 1, 0.0, _WAITING
            if j + 1 >= counts[r]:
                done[r] = True
            else:
                decide(r)

    keep = session_of >= 0
    lane_of = np.broadcast_to(rows[:, None], shape)
    return PlaybackLog(
        lane=lane_of[keep],
        session=session_of[keep],
        size_bytes=size[keep],
        needed_bytes=needed[keep],
        preloaded_bytes=preloaded[keep],
        downloaded_bytes=downloaded[keep],
        wait_s=wait[keep],
        stall_s=stall[keep],
        stalls=stalls[keep],
        played_s=watch[keep],
        bitrate_bps=(rate * 8.0)[keep],
        sim_time_s=sim_time,
    )
