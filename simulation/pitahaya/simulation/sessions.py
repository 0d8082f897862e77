"""Held-out viewing sessions to replay: generated logs, KuaiRand views, or Dashlet swipe curves.

A `Session` is the views one user made in one sitting, in play order, plus what the device had
seen before it (``history``, fed to the model's feature state first). Sources:

- `generated_sessions` (default): a log from `pitahaya.training.generate_views`, cut at the
  training job's time split; held-out users' test-period views, split into sittings at pauses
  longer than 30 minutes. Pass the views and ``test_from`` of a training run to replay exactly
  the period its model never saw.
- `kuairand_sessions`: real watch times from the KuaiRand like/hate subset. It is not a full log
  (only views that got a like or a hate), so a session is a run of one user's consecutive rows in
  the held-out period; the model still sees each user's earlier rows as history.
- `dashlet_sessions`: Dashlet's per-video swipe-time distributions as a user model: random feeds
  of real videos, each watch time drawn from that video's curve.

`at_bitrate` rewrites file sizes for a fixed video bitrate (the headline setting is 1.0 Mbps).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pitahaya.client_runtime import View
from pitahaya.training import GeneratorConfig, generate_views
from pitahaya.training.simulation.errors import SessionSourceError

#: A pause longer than this between two views starts a new session (as the scene's features do).
SESSION_GAP_S = 1800.0

_KUAIRAND_FILE = "processed_standard_kcore_15.tsv"


@dataclass(frozen=True, eq=False)
class Session:
    """One sitting of one user.

    Attributes:
        user_id: Who watched (one device per user).
        views: The views, in play order; ``watch_s`` is what the user will really watch.
        history: Earlier views of the same user, in time order (model feature state).
    """

    user_id: str
    views: tuple[View, ...]
    history: tuple[View, ...] = ()


def at_bitrate(sessions: Sequence[Session], bitrate_bps: float) -> list[Session]:
    """The same sessions with every file (views and history) encoded at ``bitrate_bps``."""
    if not bitrate_bps > 0:
        raise ValueError(f"bitrate_bps must be positive, got {bitrate_bps!r}")

    def resize(view: View) -> View:
        return dataclasses.replace(
            view, size_bytes=max(1, round(view.duration_s * bitrate_bps / 8.0))
        )

    return [
        Session(
            s.user_id,
            tuple(resize(v) for v in s.views),
            tuple(resize(v) for v in s.history),
        )
        for s in sessions
    ]


def _split_sittings(
    user_id: str, views: Sequence[View], history: list[View], min_views: int
) -> list[Session]:
    sessions: list[Session] = []
    start = 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].start_ts - views[i - 1].end_ts > SESSION_GAP_S:
            sitting = tuple(views[start:i])
            if len(sitting) >= min_views:
                sessions.append(Session(user_id, sitting, tuple(history)))
            history.extend(sitting)
            start = i
    return sessions


def _pick_users(users: Sequence[str], max_users: int | None, seed: int) -> list[str]:
    users = sorted(users)
    if max_users is None or len(users) <= max_users:
        return users
    picked = np.random.default_rng(seed).choice(
        len(users), size=max_users, replace=False
    )
    return [users[i] for i in sorted(picked)]


def held_out_from(views: Sequence[View], test_frac: float = 0.2) -> float:
    """Where the training job's time split starts its test period for these views.

    Uses `pitahaya.training.split_by_time` itself (on a featureless dataset), so the held-out
    period is exactly the one a model trained on ``views`` was evaluated on.
    """
    from pitahaya.training import Dataset, split_by_time  # pandas: only when the split is recomputed

    n = len(views)
    dataset = Dataset(
        X=np.empty((n, 0), dtype=np.float32),
        y=np.array([v.watch_s for v in views]),
        user_ids=np.array([v.user_id for v in views], dtype=str),
        start_ts=np.array([v.start_ts for v in views]),
        index=np.arange(n),
        feature_names=(),
        video_ids=np.array([v.video_id for v in views], dtype=str),
        duration_s=np.array([v.duration_s for v in views]),
        size_bytes=np.array([v.size_bytes for v in views]),
    )
    return split_by_time(dataset, test_frac=test_frac).test_from


def generated_sessions(
    views: Sequence[View] | None = None,
    *,
    test_from: float | None = None,
    generator: GeneratorConfig | None = None,
    max_users: int | None = 200,
    min_views: int = 5,
    seed: int = 0,
) -> list[Session]:
    """Held-out sessions of a generated (or given) log.

    Args:
        views: The log; omitted, one is generated from ``generator``.
        test_from: Start of the held-out period (e.g. a `TrainResult.test_from`); omitted,
            the training job's split of ``views`` is recomputed.
        generator: Generator config when ``views`` is omitted (default: 20,000 views, seed 7).
        max_users: Held-out users to keep (chosen reproducibly), or None for all.
        min_views: Shorter sittings are skipped (their views still count as history).
        seed: Seed of the user choice.
    """
    if views is None:
        views = generate_views(
            generator or GeneratorConfig(n_views=20_000, n_users=200, seed=7)
        )
    if not views:
        raise SessionSourceError("the log has no views")
    cut = held_out_from(views) if test_from is None else test_from
    streams: dict[str, list[View]] = {}
    for view in views:
        streams.setdefault(view.user_id, []).append(view)
    sessions: list[Session] = []
    held_out = [u for u, s in streams.items() if any(v.start_ts >= cut for v in s)]
    for user in _pick_users(held_out, max_users, seed):
        stream = sorted(streams[user], key=lambda v: v.start_ts)
        history = [v for v in stream if v.start_ts < cut]
        sessions += _split_sittings(
            user, [v for v in stream if v.start_ts >= cut], history, min_views
        )
    if not sessions:
        raise SessionSourceError(f"no held-out session with at least {min_views} views")
    return sessions


def kuairand_sessions(
    root: str | Path,
    *,
    bitrate_bps: float = 1_000_000.0,
    max_users: int | None = 200,
    session_views: int = 20,
    min_views: int = 5,
    test_frac: float = 0.2,
    seed: int = 0,
) -> list[Session]:
    """Pseudo-sessions of real KuaiRand watch times (``<root>/processed_standard_kcore_15.tsv``).

    Rows with an unknown duration (``duration_ms == 0``: image posts) are dropped; file sizes
    come from ``bitrate_bps`` (KuaiRand has none). Each user's rows from the global
    ``1 - test_frac`` time quantile on are cut into runs of ``session_views``; earlier rows are
    history.

    Raises:
        SessionSourceError: the file is missing, lacks a column, or yields no session.
    """
    path = Path(root) / _KUAIRAND_FILE
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as e:
        raise SessionSourceError(f"cannot read KuaiRand views at {path}: {e}") from e
    views: list[View] = []
    try:
        for row in rows:
            duration_s = float(row["duration_ms"]) / 1000.0
            if duration_s <= 0:
                continue
            views.append(
                View(
                    user_id=row["user_id"],
                    video_id=row["video_id"],
                    start_ts=float(row["time_ms"]) / 1000.0,
                    duration_s=duration_s,
                    watch_s=float(row["play_time_ms"]) / 1000.0,
                    size_bytes=max(1, round(duration_s * bitrate_bps / 8.0)),
                )
            )
    except (KeyError, ValueError) as e:
        raise SessionSourceError(
            f"{path}: malformed row ({type(e).__name__}: {e})"
        ) from e
    if not views:
        raise SessionSourceError(f"{path}: no views with a known duration")
    cut = float(np.quantile([v.start_ts for v in views], 1.0 - test_frac))
    streams: dict[str, list[View]] = {}
    for view in views:
        streams.setdefault(view.user_id, []).append(view)
    sessions: list[Session] = []
    held_out = [
        u for u, s in streams.items() if sum(v.start_ts >= cut for v in s) >= min_views
    ]
    for user in _pick_users(held_out, max_users, seed):
        stream = sorted(streams[user], key=lambda v: v.start_ts)
        history = [v for v in stream if v.start_ts < cut]
        test = [v for v in stream if v.start_ts >= cut]
        for i in range(0, len(test), session_views):
            run = tuple(test[i : i + session_views])
            if len(run) >= min_views:
                sessions.append(Session(user, run, tuple(history)))
            history.extend(run)
    if not sessions:
        raise SessionSourceError(f"{path}: no user has {min_views} held-out views")
    return sessions


def read_swipe_curves(root: str | Path) -> dict[str, np.ndarray]:
    """Dashlet's curves: video id -> probability of leaving in each whole second (last: watched to the end).

    Raises:
        SessionSourceError: missing folder, malformed file, or no curve.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise SessionSourceError(f"no Dashlet swipe curves at {folder}")
    curves: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.txt")):
        if (
            path.name == "realtime.txt"
        ):  # a placeholder in the upstream folder, not a video
            continue
        try:
            p = np.loadtxt(path, ndmin=1)
        except (OSError, ValueError) as e:
            raise SessionSourceError(
                f"{path}: not one probability per line: {e}"
            ) from e
        if len(p) < 2 or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-3):
            raise SessionSourceError(
                f"{path}: expected >= 2 non-negative probabilities summing to 1"
            )
        curves[path.stem] = p / p.sum()
    if not curves:
        raise SessionSourceError(f"no swipe curves in {folder}")
    return curves


def dashlet_sessions(
    root: str | Path,
    *,
    sessions: int = 200,
    session_views: int = 20,
    bitrate_bps: float = 1_000_000.0,
    seed: int = 0,
    start_ts: float = 1_700_000_000.0,
) -> list[Session]:
    """Random feeds of Dashlet's videos with watch times drawn from each video's swipe curve.

    A video of ``n`` lines lasts ``n - 1`` seconds; leaving in second ``i`` watches
    ``i + U(0, 1)`` seconds, the last line watches to the end. Views follow each other with a
    one-second swipe gap; each feed is its own user with no history.
    """
    curves = read_swipe_curves(root)
    ids = sorted(curves)
    rng = np.random.default_rng(seed)
    out: list[Session] = []
    for k in range(sessions):
        t = start_ts + k * 2 * SESSION_GAP_S
        views = []
        for idx in rng.choice(len(ids), size=session_views, replace=False):
            p = curves[ids[idx]]
            duration = float(len(p) - 1)
            second = int(rng.choice(len(p), p=p))
            watch = (
                duration
                if second == len(p) - 1
                else min(duration, second + float(rng.uniform()))
            )
            views.append(
                View(
                    f"dashlet-{k}",
                    ids[idx],
                    t,
                    duration,
                    round(watch, 3),
                    round(duration * bitrate_bps / 8),
                )
            )
            t += watch + 1.0
        out.append(Session(f"dashlet-{k}", tuple(views)))
    return out
