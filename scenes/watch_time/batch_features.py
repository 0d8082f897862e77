"""Vectorized twin of ``features.py``, for training on large logs (build-time code: never shipped).

Training loads this file by the path ``scene.toml`` names (``[scene] batch_features``), the
way it loads ``features.py``, and calls `batch_features` with the loaded feature module and the
numeric columns of a log in stream order. The feature module stays the source of truth: its
``Extractor.feature_names`` give the columns and their order, and its constants (session gap,
quick-swipe threshold, moving-average weights, priors) are read from it, so a retuned constant
flows into both paths. A changed *formula* cannot flow in by itself; that is why training
replays sampled users through the streaming extractor and refuses to train when the two
disagree beyond float32 tolerance.

How: features of row ``j`` depend on the user's views before ``j``. The moving averages and
the running ratio sum are recurrences; they run as one loop over view *positions* (the k-th
view of every user at once), with users ordered by view count so the users still active at
position k are a prefix of the state. Each step performs the same float64 operations as the
streaming code, in the same order, so the two paths agree bit for bit. All other features
(last view, gap, session position and elapsed time, quick-swipe window) are shifts and
cumulative sums within a user, computed block by block over whole users. Both passes write
straight into the float32 matrix and keep their float64 temporaries small (per user, per
block): at 10M rows, full-length temporaries cost more in page faults and memory traffic than
the arithmetic does.

Unknown lengths and sizes are 0 in the columns (as on the containment wire). Such views count in
the sitting features only, as in the streaming code: the recurrences leave a user's state as it
was, and the column pass counts, windows and carries forward over the views with a length.

Like ``features.py`` it imports only numpy and the standard library, so it runs wherever
training does (on Dask workers too).
"""

from collections.abc import Callable
from types import ModuleType

import numpy as np

#: Columns `_recurrences` writes, averages first; `_block_columns` writes the others.
_RECURRENT = ("ewm_ratio_fast", "ewm_ratio_slow", "ewm_watch_s", "hist_mean_ratio", "ratio_trend", "expected_watch_s")
#: Rows per block of the column pass (whole users; 256 KB per float64 temporary, cache-sized).
_BLOCK_ROWS = 1 << 15


def batch_features(
    features: ModuleType,
    *,
    start_ts: np.ndarray,
    duration_s: np.ndarray,
    watch_s: np.ndarray,
    size_bytes: np.ndarray,
    first: np.ndarray,
    item: np.ndarray,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Feature rows of views in stream order (grouped by user, each user's in time order).

    Args:
        features: The scene's loaded ``features.py`` (names, constants).
        start_ts: Start time of each view (float64).
        duration_s: Video length of each view (float64; 0: unknown).
        watch_s: Seconds watched of each view (float64).
        size_bytes: File size of each view (integers; 0: unknown).
        first: True where a row is its user's first view.
        item: The feed's figures of each view's video as its candidate carried them (float64,
            ``(n, 4)`` in `pitahaya.client_runtime.ITEM_FIELDS` order; a row of zeros: none).
        progress: Called with the fraction of the work done, now and then.

    Returns:
        float32 rows, columns in ``features.Extractor.feature_names`` order: what the
        streaming extractor computes for each view as a candidate at its start time.

    Raises:
        ValueError: the feature module declares a feature this module does not compute.
    """
    names = tuple(features.Extractor.feature_names)
    column_of = {name: j for j, name in enumerate(names)}
    n = len(start_ts)
    X = np.empty((n, len(names)), dtype=np.float32)
    if not n:
        return X

    def block(rows: slice) -> dict[str, np.ndarray]:
        columns = _block_columns(
            start_ts[rows], duration_s[rows], watch_s[rows], size_bytes[rows], first[rows], features
        )
        return columns | _item_columns(duration_s[rows], item[rows], features)

    unknown = sorted(set(names) - set(block(slice(0, 1))) - set(_RECURRENT))  # names from a one-row block
    if unknown:
        raise ValueError(f"batch_features.py does not compute {unknown}; update it with features.py")
    first_row = np.flatnonzero(first)
    _recurrences(X, column_of, watch_s, duration_s, first_row, np.diff(first_row, append=n), features, progress)
    # Blocks of whole users, about _BLOCK_ROWS rows each (a longer user makes a longer block).
    bounds = np.unique(first_row[np.searchsorted(first_row, np.arange(0, n, _BLOCK_ROWS), side="right") - 1])
    bounds = np.append(bounds, n)
    for b, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        for name, column in block(slice(lo, hi)).items():
            if name in column_of:
                X[lo:hi, column_of[name]] = column
        if progress is not None and b % 64 == 0:
            progress(0.5 + 0.5 * lo / n)
    if progress is not None:
        progress(1.0)
    return X


def _block_columns(
    now: np.ndarray, d: np.ndarray, w: np.ndarray, size_bytes: np.ndarray, first: np.ndarray, f: ModuleType
) -> dict[str, np.ndarray]:
    """The features (float64) of a block of whole users that `_recurrences` does not write."""
    gap_max, quick_s, cap, recent_n = f.SESSION_GAP_S, f.QUICK_SWIPE_S, f.RATIO_CAP, int(f.RECENT_N)
    size = size_bytes.astype(np.float64)
    m = len(now)
    idx = np.arange(m)
    user_first = np.maximum.accumulate(np.where(first, idx, 0))
    has_length = d > 0
    ratio = np.zeros(m)
    np.divide(w, d, out=ratio, where=has_length)
    np.minimum(ratio, cap, out=ratio)
    bitrate = np.zeros(m)
    np.divide(size * 0.008, d, out=bitrate, where=has_length & (size > 0))

    def previous(values: np.ndarray, prior: float) -> np.ndarray:
        shifted = np.empty(m)
        shifted[1:] = values[:-1]
        shifted[first] = prior
        return shifted

    # Videos (views with a length) before each row: the user's watch figures count only those.
    videos = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(has_length, out=videos[1:])
    before = videos[idx] - videos[user_first]
    # The user's last video before each row (-1: none), for the last ratio and watch time.
    last_video = previous(np.maximum.accumulate(np.where(has_length, idx, -1)).astype(np.float64), -1.0)
    last_video = last_video.astype(np.int64)
    seen = last_video >= user_first

    last_end = previous(now + w, np.nan)
    since_last = now - last_end
    gap = np.where(first, -1.0, np.minimum(np.maximum(since_last, 0.0), gap_max))

    # Sessions: a row starts one if it is a user's first or comes > gap_max after the last view.
    new_session = first | (since_last > gap_max)
    session_first = np.maximum.accumulate(np.where(new_session, idx, 0))
    prev_session_first = np.empty(m, dtype=np.int64)
    prev_session_first[1:] = session_first[:-1]
    prev_session_first[first] = 0
    in_session = ~first & (since_last <= gap_max)
    position = np.where(in_session, idx - prev_session_first, 0).astype(np.float64)
    elapsed = np.where(in_session, np.maximum(now - now[prev_session_first], 0.0), 0.0)

    # Quick swipes among the user's last `recent_n` videos (exact: sums of 0/1 values).
    quick = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(has_length & (w < quick_s), out=quick[1:])
    quick_at = quick[np.flatnonzero(has_length)]  # quick swipes among the first v videos of the block, for each v
    quick_at = np.append(quick_at, quick[m])
    window = np.minimum(before, recent_n)
    count = videos[idx]  # videos of the block before each row
    with np.errstate(invalid="ignore"):
        quick_share = np.where(window > 0, (quick_at[count] - quick_at[count - window]) / window, 0.0)

    return {
        "cand_duration_s": d,
        "cand_log_size": np.log1p(size),
        "cand_bitrate_kbps": bitrate,
        "hist_log_views": np.log1p(before.astype(np.float64)),
        "last_ratio": np.where(seen, ratio[last_video], f.PRIOR_RATIO),
        "last_watch_s": np.where(seen, w[last_video], f.PRIOR_WATCH_S),
        "quick_share_recent": quick_share,
        "gap_s": gap,
        "session_position": position,
        "session_elapsed_s": elapsed,
        "hour_of_day": np.mod(now, 86400.0) / 3600.0,
    }


def _item_columns(d: np.ndarray, item: np.ndarray, f: ModuleType) -> dict[str, np.ndarray]:
    """The features of the feed's figures of each candidate, shrunk towards the priors (float64)."""
    views, mean_watch, mean_ratio, quick_share = item.T
    k = f.ITEM_PRIOR_VIEWS
    ratio = (views * mean_ratio + k * f.PRIOR_RATIO) / (views + k)
    watch = (views * mean_watch + k * f.PRIOR_WATCH_S) / (views + k)
    return {
        "item_log_views": np.log1p(views),
        "item_ratio": ratio,
        "item_quick_share": (views * quick_share + k * f.PRIOR_QUICK_SHARE) / (views + k),
        "item_watch_s": watch,
        "item_expected_watch_s": np.where(d > 0, ratio * d, watch),
    }


def _recurrences(
    X: np.ndarray,
    column_of: dict[str, int],
    watch: np.ndarray,
    duration: np.ndarray,
    first_row: np.ndarray,
    counts: np.ndarray,
    f: ModuleType,
    progress: Callable[[float], None] | None,
) -> None:
    """Write the columns of ``X`` that come from the moving averages and the running ratio sum.

    One step per view position p: the users with more than p views are a prefix of the
    users sorted by view count, and ``at`` holds the row of their p-th view. Each step writes
    the features of those rows from the state (the views before them), then folds them in.
    The state lives in small per-user arrays and each row is written once, straight into
    ``X``: full-length float64 temporaries would cost more in page faults than the loop. The
    loop runs once per position (the longest user's view count), so each step is a handful of
    NumPy calls on stacked rows.
    """
    n_users = len(first_row)
    # Per user: rows 0-5 the features written (in `_RECURRENT` order, averages first), 6-8 what
    # this view feeds the three averages, 9 its duration, 10 the ratio sum, 11-13 scratch, 14 the
    # views with a length so far (the only ones the averages count; exact in float64).
    state = np.empty((15, n_users))
    # Columns of X the state rows go to (a feature features.py no longer declares is not written).
    declared = [i for i, name in enumerate(_RECURRENT) if name in column_of]
    columns = np.array([column_of[_RECURRENT[i]] for i in declared], dtype=np.intp)
    written = slice(0, len(_RECURRENT)) if len(declared) == len(_RECURRENT) else declared  # a slice: no copy
    alpha = np.array([[f.FAST_ALPHA], [f.SLOW_ALPHA], [f.FAST_ALPHA]])
    state[0:3] = np.array([[f.PRIOR_RATIO], [f.PRIOR_RATIO], [f.PRIOR_WATCH_S]])
    state[10] = state[14] = 0.0
    at = first_row[np.argsort(-counts, kind="stable")]
    active = n_users - np.cumsum(np.bincount(counts))  # active[p]: users with more than p views
    steps = int(counts.max())
    for p in range(steps):
        k = int(active[p])
        rows, s = at[:k], state[:, :k]
        averages, inputs, ratio, view_watch, d, ratio_sum, scratch = s[0:3], s[6:9], s[6], s[8], s[9], s[10], s[11:14]
        measured = s[14]
        np.take(watch, rows, out=view_watch)
        np.take(duration, rows, out=d)
        has_length = d > 0
        ratio[:] = 0.0
        np.divide(view_watch, d, out=ratio, where=has_length)
        np.minimum(ratio, f.RATIO_CAP, out=ratio)
        s[7] = ratio
        s[3] = f.PRIOR_RATIO
        np.divide(ratio_sum, measured, out=s[3], where=measured > 0)
        np.subtract(s[0], s[1], out=s[4])
        np.multiply(s[0], d, out=s[5])
        np.copyto(s[5], s[2], where=~has_length)  # no length: the user's typical watch seconds
        X[rows[:, None], columns] = s[written].T
        # Only a view with a length moves the averages (the user's first such view sets them).
        first_video = has_length & (measured == 0)
        np.subtract(inputs, averages, out=scratch)
        scratch *= alpha
        scratch += averages
        np.copyto(averages, scratch, where=has_length & ~first_video)
        np.copyto(averages, inputs, where=first_video)
        ratio_sum += ratio  # 0 for a view with no length: the sum is unchanged, exactly
        measured += has_length
        rows += 1  # `at` moves on to each user's next view
        if progress is not None and p % 256 == 0:
            progress(0.5 * p / steps)
