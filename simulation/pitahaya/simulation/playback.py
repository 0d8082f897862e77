"""The playback model: one swipe feed per lane, bandwidth shared by the playing video and the preloads.

All lanes advance in lockstep, one time step at a time, as NumPy arrays (a lane is one device
playing its sessions back to back over its own bandwidth trace), so a step costs the same few
array operations for one lane or a thousand. Policies are asked only when a user swipes.

`play` steps a `_Playback` (the run's state) until every lane is done; one step of ``dt_s``
seconds is, for every lane, these methods in order:

1. **Start / resume** (`_start`; `_start_late` for bytes that arrive mid-step). A video that is
   waiting starts once ``startup_s`` seconds of it (or the whole file) are downloaded; a stalled
   video resumes once as much is buffered ahead of the playhead. A video that could not start
   the moment it became current is a *slow start*.
2. **Download** (`_fetch`, `_fill_preloads`) ``bandwidth x dt`` bytes, in priority order: the
   playing (or waiting) video up to its buffer-ahead target, then the preload targets of the
   next videos *in play order*, each filled before the next gets a byte. Buffer-ahead target
   (`buffer_target`, the vectorized twin of the device's
   `pitahaya.client_runtime.PreloadPlan.buffer_target_s`, checked equal by a property test):
   ``max(floor, watch_limit - position)`` seconds of content ahead of the playhead, at most
   ``buffer_ahead_s``, so a policy that expects the user to leave early stops buffering what
   will never be watched; the floor is the decision's ``buffer_floor_s`` or ``floor_rate_s`` x
   bitrate / the bandwidth meter (an exponential average of the link's speed over ``meter_s``),
   whichever is larger. The player's full ``buffer_ahead_s`` once the playhead passes the limit
   (the user outlived the prediction) or while the meter reads less than the decision's
   ``min_throughput_bps``.
3. **Play** (`_play`, `_count_idle_step`) up to ``dt_s`` seconds; running out of buffered
   content mid-step is a *stall* (the rest of the step is stall time). A waiting step counts as
   start-up wait, a stalled step as stall time. Replays past the end of a video need no more
   bytes.
4. **Swipe** (`_swipe`) when the user's watch time is reached: the next video becomes current
   (its bytes so far are its *preload*), and the policy decides again (`_start_view`).

Events land on step boundaries, so results converge as ``dt_s`` shrinks; a test pins that
halving the default step moves no headline figure by more than 1%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pitahaya.client_runtime.package import MAX_QUANTILES
from pitahaya.simulation._lanes import Feeds, Links
from pitahaya.simulation.networks import Trace
from pitahaya.simulation.sessions import Session

_WAITING, _PLAYING, _STALLED = 0, 1, 2
#: A file this close to complete is complete (float sums of byte counts may miss by an ulp).
_BYTE_TOLERANCE = 1e-3
#: ... and so are times this close (seconds): a playhead this close to the watch time swipes, or
#: to a decision's buffer limit has passed it.
_TIME_TOLERANCE = 1e-9
#: Most buffer limits one decision may set: a cap at each of a model's outputs.
MAX_LIMITS = 1 + MAX_QUANTILES
#: Link speed (bytes/s) divided by when a dead link (0 B/s) delivers a start mid-step: the
#: quotient is clipped to the step anyway, so only the division by zero is avoided.
_SPEED_FLOOR = 1e-12


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
            raise ValueError("need dt_s > 0, startup_s >= 0, buffer_ahead_s > 0, lookahead >= 1 and meter_s > 0")


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
        floor_rate_s: ... and at least this many seconds x bitrate / the meter's reading.
        watch_then_s: Further limits, increasing: once the playhead passes a limit, the next
            holds (a device plan's `PreloadPlan.buffer_then_s`); at most `MAX_LIMITS` in all.
    """

    preload_bytes: tuple[int, ...] = ()
    watch_limit_s: float = math.inf
    buffer_floor_s: float = 0.0
    min_throughput_bps: float = 0.0
    floor_rate_s: float = 0.0
    watch_then_s: tuple[float, ...] = ()


def limit_in_force(limits: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Per lane, the first of its increasing limits (a row of ``limits``, ending with ``inf``)
    that the playhead has not reached, within the time tolerance; ``inf`` when none is left."""
    reached = (limits <= pos[:, None] + _TIME_TOLERANCE).sum(axis=1)
    return limits[np.arange(len(pos)), reached]


def buffer_target(
    pos: np.ndarray,
    limit: np.ndarray,
    floor_s: np.ndarray,
    floor_rate_s: np.ndarray,
    min_meter: np.ndarray,
    meter: np.ndarray,
    rate: np.ndarray,
    full_s: float,
) -> np.ndarray:
    """Seconds of the playing video to buffer past the playhead, per lane (all byte figures in bytes/s).

    The player's ``full_s`` when the decision set no limit, the playhead passed it, or the meter
    reads below ``min_meter``; else ``max(floor, limit - pos)`` with ``limit - pos`` capped at
    ``full_s``, the floor being ``floor_s`` or ``floor_rate_s x rate / meter`` (capped at
    ``full_s``), whichever is larger. With ``floor_s <= full_s`` that is the device's
    `PreloadPlan.buffer_target_s` capped at ``full_s``.
    """
    # A playhead within the time tolerance has reached the limit: left capped an ulp short of it,
    # a stalled video with no start-up threshold to fetch would want nothing more and stall forever.
    capped = (pos < limit - _TIME_TOLERANCE) & (meter >= min_meter)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a dead link (meter 0): an infinite floor
        rate_floor = np.where(floor_rate_s > 0.0, floor_rate_s * rate / meter, 0.0)
    floor = np.maximum(floor_s, np.minimum(full_s, rate_floor))
    return np.where(capped, np.maximum(floor, np.minimum(full_s, limit - pos)), full_s)


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
        ValueError: no lane, lanes and traces differ in number, or a lane has no views.
    """
    if len(lanes) != len(traces):
        raise ValueError(f"{len(lanes)} lanes but {len(traces)} traces")
    if not lanes or any(not lane for lane in lanes) or any(not s.views for lane in lanes for s in lane):
        raise ValueError("need a lane, every lane needs at least one session and every session at least one view")
    offsets = np.zeros(len(lanes)) if offsets_s is None else np.asarray(offsets_s, dtype=np.float64)
    return _Playback(Feeds.of(lanes, config.startup_s), Links(traces, offsets), policy, config).run(lanes)


@dataclass(frozen=True, slots=True)
class _Current:
    """The video each lane is on and the preload window after it (the sink once done: ``rate`` 1 there, not 0).

    Gathered from the (lane x slot) tables again only after a step in which a lane swiped: with few
    lanes most steps change no lane's video, and the gathers were a good part of such a step.

    Attributes:
        window: Flat (lane x slot) index of each lane's next ``lookahead`` videos, one row per
            position in the window (so the in-order fill accumulates along contiguous rows); a
            position past the session's end points at the lane's sink, whose target stays 0.
    """

    col: np.ndarray
    rate: np.ndarray
    size: np.ndarray
    duration: np.ndarray
    threshold: np.ndarray
    watch: np.ndarray
    window: np.ndarray


class _Playback:
    """One lockstep run: what each video got so far and each lane's player.

    Per video (lane x slot, see `Feeds`): bytes downloaded, preload target, preload at the
    swipe, start-up wait, stall time and count. The current video's bytes, wait, stall time and
    stalls are counted in per-lane arrays instead (``have``, ``waited``, ``stalled_s``,
    ``stall_count``), filed into those tables at its swipe: a step updates them without a gather
    and scatter each. Per lane: the current slot, the playhead, the player state (waiting ->
    playing <-> stalled; a swipe makes the next video waiting), the current decision's buffer cap
    (``limit``, ``floor``, ``min_meter``), the bandwidth meter, whether the lane is done and its
    simulated time.
    """

    def __init__(self, feeds: Feeds, links: Links, policy: Policy, config: PlaybackConfig) -> None:
        self.feeds, self.links, self.policy, self.config = feeds, links, policy, config
        n_lanes, shape = len(feeds.counts), feeds.size.shape
        self.rows = np.arange(n_lanes)
        self.downloaded, self.target, self.preloaded = np.zeros(shape), np.zeros(shape), np.zeros(shape)
        self.wait, self.stall, self.stalls = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
        self.have, self.waited, self.stalled_s = np.zeros(n_lanes), np.zeros(n_lanes), np.zeros(n_lanes)
        self.stall_count = np.zeros(n_lanes, dtype=np.int64)
        self.cur = np.zeros(n_lanes, dtype=np.int64)
        self.pos = np.zeros(n_lanes)
        self.state = np.full(n_lanes, _WAITING)
        # each lane's limits in order, then inf (none left); one column until a plan has further ones
        self.limits = np.full((n_lanes, 2), math.inf)
        self.floor = np.zeros(n_lanes)
        self.floor_rate = np.zeros(n_lanes)
        self.min_meter = np.zeros(n_lanes)  # bytes/s
        self.meter = links.speed_at(0.0)
        self.meter_keep = math.exp(-config.dt_s / config.meter_s)
        self.done = feeds.counts == 0
        self.sim_time = np.zeros(n_lanes)
        self.session_counter = [0] * n_lanes
        self.steps = 0
        self.now = self._current()

    def run(self, lanes: Sequence[Sequence[Session]]) -> PlaybackLog:
        """Play ``lanes`` (the sessions ``feeds`` was built from) to the end."""
        self.policy.begin(lanes)
        for r in range(len(lanes)):
            self._start_view(r)
        while not self.done.all():
            self._step()
        return self._log()

    def _start_view(self, r: int) -> None:
        """Lane ``r``'s current video just became current: its preload is final, the policy decides."""
        j, look = int(self.cur[r]), self.config.lookahead
        self.preloaded[r, j] = self.have[r] = self.downloaded[r, j]
        decision = self.policy.decide(r, self.session_counter[r], int(self.feeds.local_index[r, j]))
        ahead = decision.preload_bytes[: min(look, int(self.feeds.session_last[r, j]) - j)]
        self.target[r, j + 1 : j + 1 + look] = 0.0
        if ahead:
            self.target[r, j + 1 : j + 1 + len(ahead)] = np.minimum(
                ahead, self.feeds.size[r, j + 1 : j + 1 + len(ahead)]
            )
        steps = (decision.watch_limit_s, *decision.watch_then_s[: MAX_LIMITS - 1])
        if len(steps) >= self.limits.shape[1]:  # widen, keeping the last column inf
            self.limits = np.pad(
                self.limits, ((0, 0), (0, MAX_LIMITS + 1 - self.limits.shape[1])), constant_values=math.inf
            )
        self.limits[r] = math.inf
        self.limits[r, : len(steps)] = steps
        self.floor[r] = decision.buffer_floor_s
        self.floor_rate[r] = decision.floor_rate_s
        self.min_meter[r] = decision.min_throughput_bps / 8.0

    def _step(self) -> None:
        active, now, dt = ~self.done, self.now, self.config.dt_s
        # A step on which every lane plays has nothing to start, start late or count as idle (with
        # few lanes, most steps): those three steps are skipped then.
        idle = bool((active & (self.state != _PLAYING)).any())
        if idle:
            had = self.have.copy()  # the bytes before this step's download, for `_start_late`'s moment
            self._start(now, active)
        speed = np.where(active, self.links.speed_at(self.steps * dt), 0.0)
        resume_at = self._fetch(now, speed)
        offset: np.ndarray | float = 0.0
        if idle:
            late, offset = self._start_late(now, active, had, speed, resume_at)
        playing, starved = self._play(now, active, offset)
        if idle:
            self._count_idle_step(active, late, starved)
        self.steps += 1
        self._swipe(now, playing)

    def _current(self) -> _Current:
        f, rows, look = self.feeds, self.rows, self.config.lookahead
        col = np.minimum(self.cur, f.n_max)
        rate = f.rate[rows, col]
        window = col + np.arange(1, look + 1)[:, None]
        window = np.where(window <= f.session_last[rows, col], window, f.n_max)
        return _Current(
            col=col,
            rate=np.where(rate > 0, rate, 1.0),
            size=f.size[rows, col],
            duration=f.duration[rows, col],
            threshold=f.threshold[rows, col],
            watch=f.watch[rows, col],
            window=rows * f.size.shape[1] + window,
        )

    def _start(self, now: _Current, active: np.ndarray) -> None:
        """A waiting video with its start-up bytes starts; a stalled one with ``startup_s`` buffered resumes."""
        have = self.have
        starting = active & (self.state == _WAITING) & (have >= now.threshold - _BYTE_TOLERANCE)
        ahead_s = np.where(have >= now.size - _BYTE_TOLERANCE, np.inf, have / now.rate - self.pos)
        resuming = (
            active
            & (self.state == _STALLED)
            & (ahead_s >= np.minimum(self.config.startup_s, now.duration - self.pos) - _TIME_TOLERANCE)
        )
        self.state[starting | resuming] = _PLAYING

    def _fetch(self, now: _Current, speed: np.ndarray) -> np.ndarray:
        """Download this step's bytes: the current video up to its buffer target, the rest to preloads.

        Returns each current video's resume point (bytes it needs before a stall ends).
        """
        config, pos, state = self.config, self.pos, self.state
        budget = speed * config.dt_s
        self.meter = self.meter_keep * self.meter + (1.0 - self.meter_keep) * speed
        limit = self.limits[:, 0] if self.limits.shape[1] == 2 else limit_in_force(self.limits, pos)
        buffer_s = buffer_target(
            pos, limit, self.floor, self.floor_rate, self.min_meter, self.meter, now.rate, config.buffer_ahead_s
        )
        played_to = np.minimum(pos, now.duration)
        want = now.rate * (played_to + buffer_s)
        want = np.where(state == _WAITING, np.maximum(want, now.threshold), want)
        resume_at = now.rate * (played_to + config.startup_s)
        want = np.minimum(now.size, np.where(state == _STALLED, np.maximum(want, resume_at), want))
        give = np.clip(want - self.have, 0.0, budget)
        self.have += give
        self._fill_preloads(now, budget - give)
        return resume_at

    def _fill_preloads(self, now: _Current, spare: np.ndarray) -> None:
        """Spend ``spare`` bytes on the next videos' preload targets, in play order, each filled before the next."""
        downloaded = self.downloaded.reshape(-1)
        deficit = np.clip(self.target.reshape(-1)[now.window] - downloaded[now.window], 0.0, None)
        before = np.cumsum(deficit, axis=0) - deficit
        downloaded[now.window] += np.clip(spare - before, 0.0, deficit)

    def _start_late(
        self, now: _Current, active: np.ndarray, had: np.ndarray, speed: np.ndarray, resume_at: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A video whose start (or resume) bytes arrived during this step plays from that moment.

        The current video is downloaded first, at the link's full speed, so the moment is the
        missing bytes over the speed; until then the step counts as wait (or stall).

        Returns:
            Which lanes started late, and the offset into the step at which each did (0 elsewhere).
        """
        ready_at = np.minimum(np.where(self.state == _WAITING, now.threshold, resume_at), now.size)
        late = active & (self.state != _PLAYING) & (self.have >= ready_at - _BYTE_TOLERANCE)
        dt = self.config.dt_s
        offset = np.where(late, np.clip((ready_at - had) / np.maximum(speed, _SPEED_FLOOR), 0.0, dt), 0.0)
        self.waited += np.where(late & (self.state == _WAITING), offset, 0.0)
        self.stalled_s += np.where(late & (self.state == _STALLED), offset, 0.0)
        self.state[late] = _PLAYING
        return late, offset

    def _play(self, now: _Current, active: np.ndarray, offset: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Play what is left of the step; running out of buffered content mid-step is a stall.

        Returns:
            Which lanes played this step, and which of them stalled.
        """
        have, pos = self.have, self.pos
        playing = active & (self.state == _PLAYING)
        span = self.config.dt_s - offset
        avail = np.where(have >= now.size - _BYTE_TOLERANCE, np.inf, have / now.rate - pos)
        remaining = now.watch - pos
        played = np.where(playing, np.clip(np.minimum(remaining, avail), 0.0, span), 0.0)
        starved = playing & (avail < np.minimum(span, remaining) - _TIME_TOLERANCE)
        pos += played
        self.state[starved] = _STALLED
        self.stall_count += starved
        self.stalled_s += np.where(starved, span - played, 0.0)
        return playing, starved

    def _count_idle_step(self, active: np.ndarray, late: np.ndarray, starved: np.ndarray) -> None:
        """A lane stalled (or waiting) for the whole step adds the step to its stall (or wait)."""
        dt, stalled = self.config.dt_s, self.state == _STALLED
        self.stalled_s += np.where(active & stalled & ~starved & ~late, dt, 0.0)
        self.waited += np.where(active & (self.state == _WAITING), dt, 0.0)

    def _swipe(self, now: _Current, playing: np.ndarray) -> None:
        """Lanes whose user reached the watch time move to the next video (or are done)."""
        swiped = (playing & (self.pos >= now.watch - _TIME_TOLERANCE)).nonzero()[0].tolist()
        for r in swiped:
            j = int(self.cur[r])
            self._file(r, j)
            if j == self.feeds.session_last[r, j]:
                self.policy.end(r, self.session_counter[r])
                self.session_counter[r] += 1
            self.cur[r], self.pos[r], self.state[r] = j + 1, 0.0, _WAITING
            if j + 1 >= self.feeds.counts[r]:
                self.done[r] = True
                self.sim_time[r] = self.steps * self.config.dt_s
            else:
                self._start_view(r)
        if swiped:
            self.now = self._current()

    def _file(self, r: int, j: int) -> None:
        """Lane ``r``'s per-lane counts of its video ``j`` go to the tables, and restart at 0 for the next video."""
        self.downloaded[r, j], self.wait[r, j] = self.have[r], self.waited[r]
        self.stall[r, j], self.stalls[r, j] = self.stalled_s[r], self.stall_count[r]
        self.have[r] = self.waited[r] = self.stalled_s[r] = self.stall_count[r] = 0

    def _log(self) -> PlaybackLog:
        f = self.feeds
        keep = f.session_of >= 0
        lane_of = np.broadcast_to(self.rows[:, None], f.size.shape)
        return PlaybackLog(
            lane=lane_of[keep],
            session=f.session_of[keep],
            size_bytes=f.size[keep],
            needed_bytes=f.needed[keep],
            preloaded_bytes=self.preloaded[keep],
            downloaded_bytes=self.downloaded[keep],
            wait_s=self.wait[keep],
            stall_s=self.stall[keep],
            stalls=self.stalls[keep],
            played_s=f.watch[keep],
            bitrate_bps=(f.rate * 8.0)[keep],
            sim_time_s=self.sim_time,
        )
