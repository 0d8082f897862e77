"""A seeded generator of realistic short-video event logs, for the demo and tests.

The world it simulates, in the order `generate_views` builds it:

1. **Catalog.** Each video has a duration (lognormal, median ~20 s, clipped to 3-300 s), a
   latent *appeal*, a bitrate of 0.5-3 Mbps that leans towards appealing videos (better
   producers upload better files), hence a file size, and a Zipf-like popularity led by appeal.
2. **Users.** Each user has a persistent *engagement* trait, an activity level that shares
   out the views, and a hidden two-state Markov *mode*: fast-swiping (leave after a second or
   two) or careful-watching (often finish, sometimes replay). The mode persists for runs of
   ~5-30 views, is partly redrawn at each session start, and leans careful in the evening.
   That persistence is what makes the next watch time predictable from recent history, and
   what the scene's features (moving averages of the watch ratio) are built to pick up.
3. **Sessions.** Views come in sessions of consecutive swipes: the next view starts when the
   previous one ends plus a swipe gap of 0.3-3 s. Sessions are hours apart, a few per day.
4. **Watch time.** Fast mode watches a few seconds (ratio ~0.05-0.2 of a 20 s video);
   careful mode finishes appealing or short videos, watches part of the rest, and replays
   short ones (ratios up to 2-3x and a thin tail beyond). Times are rounded to milliseconds
   like real client logs. The mix lands between KuaiRand's liked and hated views (real
   Kuaishou logs): about 40% of views above a ratio of 1, 5% above 2, 1% above 4.

Everything is drawn from one `numpy.random.Generator`, so a `GeneratorConfig` fully
determines the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pitahaya.client_runtime import View
from pitahaya.training.table import ViewTable

_DAY_S = 86_400.0


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Times are in seconds, sizes in bytes.

    Attributes:
        n_views: Exact number of views to generate.
        n_users: Number of users sharing the views (users drawn with no views are dropped).
        n_videos: Size of the video catalog.
        seed: Seed of the random generator; equal configs give equal logs.
        start_ts: Unix time of midnight UTC on the first day.
        days: Length of the simulated period.
        mean_session_views: Average number of views per session.
        median_duration_s: Median video duration.
        min_duration_s: Shortest video.
        max_duration_s: Longest video.
        min_bitrate_bps: Lowest video bitrate.
        max_bitrate_bps: Highest video bitrate.
        mean_mode_run_views: Average length of a run of views in one mode.
    """

    n_views: int = 200_000
    n_users: int = 1_000
    n_videos: int = 20_000
    seed: int = 0
    start_ts: float = 1_699_920_000.0  # 2023-11-14T00:00:00Z
    days: int = 5
    mean_session_views: float = 20.0
    median_duration_s: float = 20.0
    min_duration_s: float = 3.0
    max_duration_s: float = 300.0
    min_bitrate_bps: float = 500_000.0
    max_bitrate_bps: float = 3_000_000.0
    mean_mode_run_views: float = 12.0

    def __post_init__(self) -> None:
        if self.n_views < 1 or self.n_users < 1 or self.n_videos < 1 or self.days < 1:
            raise ValueError("n_views, n_users, n_videos and days must be positive")
        if not 0 < self.min_duration_s <= self.median_duration_s <= self.max_duration_s:
            raise ValueError("need 0 < min_duration_s <= median_duration_s <= max_duration_s")
        if not 0 < self.min_bitrate_bps <= self.max_bitrate_bps:
            raise ValueError("need 0 < min_bitrate_bps <= max_bitrate_bps")
        if self.mean_session_views < 1 or self.mean_mode_run_views < 1:
            raise ValueError("mean_session_views and mean_mode_run_views must be >= 1")


@dataclass(frozen=True)
class _Catalog:
    duration_s: np.ndarray
    size_bytes: np.ndarray
    appeal: np.ndarray
    popularity: np.ndarray  # probabilities summing to 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _make_catalog(config: GeneratorConfig, rng: np.random.Generator) -> _Catalog:
    n = config.n_videos
    duration = np.exp(rng.normal(np.log(config.median_duration_s), 0.9, n))
    duration = np.round(np.clip(duration, config.min_duration_s, config.max_duration_s), 3)
    appeal = rng.normal(0.0, 1.0, n)
    span = config.max_bitrate_bps - config.min_bitrate_bps
    bitrate = config.min_bitrate_bps + span * _sigmoid(0.7 * appeal + rng.normal(0.0, 1.0, n))
    size = np.maximum(np.round(duration * bitrate / 8.0), 1).astype(np.int64)
    # Popular because appealing, plus luck; Zipf weights over that ranking.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-(appeal + rng.normal(0.0, 1.0, n)))] = np.arange(1, n + 1)
    weight = rank**-0.9
    return _Catalog(duration, size, appeal, weight / weight.sum())


def _session_layout(
    config: GeneratorConfig, views_per_user: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each user's views into sessions and plan when each session starts.

    Returns:
        session_of_view: Session index (global, in time order per user) of every view.
        planned_start: Planned start time of every session; `_timeline` may push it later
            so that sessions never overlap.
    """
    lengths: list[np.ndarray] = []
    for m in views_per_user:
        n_draw = int(m / config.mean_session_views * 2) + 4
        sizes = rng.geometric(1.0 / config.mean_session_views, n_draw)
        while sizes.sum() < m:
            sizes = np.concatenate([sizes, rng.geometric(1.0 / config.mean_session_views, n_draw)])
        ends = np.cumsum(sizes)
        k = int(np.searchsorted(ends, m))  # the session holding the user's last view
        sizes = sizes[: k + 1].copy()
        sizes[k] -= ends[k] - m
        lengths.append(sizes)
    sessions_per_user = np.array([len(s) for s in lengths])
    session_of_view = np.repeat(np.arange(sessions_per_user.sum()), np.concatenate(lengths))
    # Diurnal start times: lunch and evening peaks, a quiet night.
    n_sessions = int(sessions_per_user.sum())
    day = rng.integers(0, config.days, n_sessions)
    peak = rng.choice(3, n_sessions, p=[0.25, 0.15, 0.6])
    hour = np.where(
        peak == 0,
        rng.normal(12.5, 1.5, n_sessions),
        np.where(peak == 1, rng.uniform(7, 24, n_sessions), rng.normal(21.0, 1.8, n_sessions)),
    )
    planned = config.start_ts + day * _DAY_S + np.mod(hour, 24.0) * 3600.0
    user_of_session = np.repeat(np.arange(len(views_per_user)), sessions_per_user)
    order = np.lexsort((planned, user_of_session))  # sort sessions by time within each user
    return session_of_view, planned[order]


def _modes(
    config: GeneratorConfig,
    user_of_view: np.ndarray,
    first_of_user: np.ndarray,
    session_start: np.ndarray,
    evening: np.ndarray,
    careful_share: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Run every user's hidden fast/careful Markov chain; returns True where careful."""
    switch = 1.0 / config.mean_mode_run_views
    n = len(user_of_view)
    p_to_careful = np.minimum(2.0 * switch * careful_share, 0.9)[user_of_view]
    p_to_fast = np.minimum(2.0 * switch * (1.0 - careful_share), 0.9)[user_of_view]
    # A new session redraws the mode half of the time, from the user's evening-tilted share.
    logit = np.log(careful_share / (1.0 - careful_share))[user_of_view] + np.where(evening, 0.6, -0.3)
    redraw = session_start & (rng.random(n) < 0.5)
    redraw_careful = rng.random(n) < _sigmoid(logit)
    u = rng.random(n).tolist()
    careful = np.empty(n, dtype=bool)
    state = False
    for i, (new_user, is_redraw, draw, p_c, p_f) in enumerate(
        zip(
            first_of_user.tolist(),
            redraw.tolist(),
            redraw_careful.tolist(),
            p_to_careful.tolist(),
            p_to_fast.tolist(),
            strict=True,
        )
    ):
        if new_user or is_redraw:
            state = draw
        elif u[i] < (p_f if state else p_c):
            state = not state
        careful[i] = state
    return careful


def _watch_seconds(
    careful: np.ndarray, duration: np.ndarray, appeal: np.ndarray, engagement: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw watch seconds given the mode, the video and the user (all per view)."""
    n = len(careful)
    log_len = np.log(duration / 20.0)
    # Fast mode: a glance of a second or two, whatever the length (never a replay).
    glance = np.exp(rng.normal(np.log(1.6) + 0.2 * appeal + 0.1 * engagement, 0.55, n))
    fast = np.minimum(glance, duration * rng.uniform(0.6, 1.0, n))
    # Careful mode: finish, then maybe replay (short videos more), or leave part-way.
    finish = rng.random(n) < _sigmoid(0.6 + 0.8 * appeal + 0.5 * engagement - 0.9 * log_len)
    replay = rng.random(n) < _sigmoid(-2.2 + 0.6 * appeal - 1.0 * log_len)
    replays = rng.geometric(0.6, n) - 1 + rng.random(n)  # under one extra play mostly, a thin tail beyond
    # Without a replay the player's loop still runs a moment before the swipe lands.
    finished = 1.0 + np.where(replay, 0.1 + replays, np.abs(rng.normal(0.0, 0.02, n)))
    partial = _sigmoid(rng.normal(0.2 + 0.5 * appeal + 0.3 * engagement - 0.4 * log_len, 1.0, n))
    ratio = np.where(finish, finished, partial)
    watch = np.where(careful, ratio * duration, fast)
    return np.round(np.maximum(watch, 0.1), 3)


def _timeline(
    session_of_view: np.ndarray,
    planned_start: np.ndarray,
    watch: np.ndarray,
    gap: np.ndarray,
    first_of_user: np.ndarray,
) -> np.ndarray:
    """Lay views end to end within sessions and keep sessions of one user hours apart."""
    step = watch + gap
    before = np.cumsum(step) - step  # sum of the steps of all earlier views
    session_first = np.flatnonzero(np.diff(session_of_view, prepend=-1) != 0)
    offset = before - before[session_first][session_of_view]
    session_len = np.add.reduceat(step, session_first) - gap[np.r_[session_first[1:] - 1, len(gap) - 1]]
    new_user = first_of_user[session_first].tolist()
    start = planned_start.tolist()
    length = session_len.tolist()
    end = -np.inf
    for s, (fresh, planned, dur) in enumerate(zip(new_user, start, length, strict=True)):
        begin = planned if fresh else max(planned, end + 3600.0)
        start[s] = begin
        end = begin + dur
    return np.round(np.asarray(start)[session_of_view] + offset, 3)


def generate_views(config: GeneratorConfig = GeneratorConfig()) -> list[View]:
    """Generate a synthetic event log.

    Args:
        config: What to generate; equal configs give equal logs.

    Returns:
        Exactly ``config.n_views`` views sorted by (user_id, start_ts). User ids are
        ``u00000``-style and video ids ``v000000``-style, so string order is index order.
    """
    return generate_table(config).views()


def generate_table(config: GeneratorConfig = GeneratorConfig()) -> ViewTable:
    """`generate_views` as columns: the same views, without building millions of objects."""
    rng = np.random.default_rng(config.seed)
    catalog = _make_catalog(config, rng)
    engagement = rng.normal(0.0, 0.7, config.n_users)
    careful_share = np.clip(_sigmoid(engagement + rng.normal(0.0, 0.5, config.n_users)), 0.05, 0.95)
    activity = np.exp(rng.normal(0.0, 0.8, config.n_users))
    views_per_user = rng.multinomial(config.n_views, activity / activity.sum())
    users = np.flatnonzero(views_per_user)
    views_per_user = views_per_user[users]
    user_of_view = np.repeat(np.arange(len(users)), views_per_user)
    first_of_user = np.diff(user_of_view, prepend=-1) != 0

    session_of_view, planned_start = _session_layout(config, views_per_user, rng)
    session_start = np.diff(session_of_view, prepend=-1) != 0
    hour = np.mod(planned_start, _DAY_S) / 3600.0
    evening = (hour >= 19.0)[session_of_view]
    careful = _modes(config, user_of_view, first_of_user, session_start, evening, careful_share[users], rng)

    video = rng.choice(config.n_videos, size=config.n_views, p=catalog.popularity)
    duration = catalog.duration_s[video]
    watch = _watch_seconds(careful, duration, catalog.appeal[video], engagement[users][user_of_view], rng)
    gap = np.clip(np.exp(rng.normal(np.log(0.8), 0.6, config.n_views)), 0.3, 3.0)
    start = _timeline(session_of_view, planned_start, watch, gap, first_of_user)

    user_ids = np.array([f"u{u:05d}" for u in users], dtype=object)
    video_ids = np.array([f"v{v:06d}" for v in range(config.n_videos)], dtype=object)
    return ViewTable(
        user_id=user_ids[user_of_view],
        video_id=video_ids[video],
        start_ts=start,
        duration_s=duration,
        watch_s=watch,
        size_bytes=catalog.size_bytes[video].astype(np.int64),
    )
