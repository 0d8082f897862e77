"""A vectorized twin of the watch-time scene's streaming extractor, for training on large logs.

The scene's ``features.py`` stays the source of truth: this module re-derives the same
features with NumPy over whole columns, reading the scene's own constants (session gap,
quick-swipe threshold, moving-average weights, priors) from the loaded feature module, so a
retuned constant flows into both paths. A changed *formula* cannot flow in by itself; that
is why `verify_batch_features` replays sampled users through the streaming extractor and
the training job refuses to train (`FeatureMismatchError`) when the two disagree beyond
float32 tolerance.

How: rows are put in (user, start time) order (no sort at all when the log already is in that
order, as generated logs and logs written per user are). Features of row ``j`` depend on the
user's views before ``j``. The moving averages and the running ratio sum are recurrences; they
run as one loop over view *positions* (the k-th view of every user at once), with users
ordered by view count so the users still active at position k are a prefix of the state.
Each step performs the same float64 operations as the streaming code, in the same order, so
the two paths agree bit for bit. All other features (last view, gap, session position and
elapsed time, quick-swipe window) are shifts and cumulative sums within a user, computed
block by block over whole users. Both passes write straight into the float32 matrix and keep
their float64 temporaries small (per user, per block): at 10M rows, full-length temporaries
cost more in page faults and memory traffic than the arithmetic does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pitahaya.client_runtime import FeatureExtractor
from pitahaya.training.dataset import Dataset, make_dataset, stream_features
from pitahaya.training.errors import FeatureMismatchError
from pitahaya.training.table import ViewTable

#: The feature columns this module knows how to compute, in the scene's order.
WATCH_TIME_FEATURES: tuple[str, ...] = (
    "cand_duration_s",
    "cand_log_size",
    "cand_bitrate_kbps",
    "hist_log_views",
    "hist_mean_ratio",
    "ewm_ratio_fast",
    "ewm_ratio_slow",
    "ratio_trend",
    "ewm_watch_s",
    "last_ratio",
    "last_watch_s",
    "quick_share_recent",
    "gap_s",
    "session_position",
    "session_elapsed_s",
    "hour_of_day",
    "expected_watch_s",
)
#: Module-level constants of the scene's ``features.py`` the batch path reads.
_CONSTANTS = (
    "SESSION_GAP_S",
    "QUICK_SWIPE_S",
    "RATIO_CAP",
    "RECENT_N",
    "FAST_ALPHA",
    "SLOW_ALPHA",
    "PRIOR_RATIO",
    "PRIOR_WATCH_S",
)
#: Columns `_recurrences` writes; the column pass writes the others.
_RECURRENT = ("ewm_ratio_fast", "ewm_ratio_slow", "ewm_watch_s", "hist_mean_ratio", "ratio_trend", "expected_watch_s")
#: Rows per block of the column pass (whole users; 256 KB per float64 temporary, cache-sized).
_BLOCK_ROWS = 1 << 15
#: Relative and absolute tolerance of the streaming check (a few float32 ulps).
RTOL, ATOL = 1e-5, 1e-5


def scene_constants(extractor_cls: type[FeatureExtractor]) -> dict[str, float] | None:
    """The scene's constants if its extractor is one this module can vectorize, else None."""
    if tuple(extractor_cls.feature_names) != WATCH_TIME_FEATURES:
        return None
    namespace: Mapping[str, Any] = getattr(extractor_cls.__init__, "__globals__", {})
    if not all(isinstance(namespace.get(name), int | float) for name in _CONSTANTS):
        return None
    return {name: namespace[name] for name in _CONSTANTS}


def supports(extractor_cls: type[FeatureExtractor]) -> bool:
    """Whether `build_matrix_batch` can compute this extractor's features."""
    return scene_constants(extractor_cls) is not None


def build_matrix_batch(
    table: ViewTable, extractor_cls: type[FeatureExtractor], progress: Callable[[float], None] | None = None
) -> Dataset:
    """The same dataset as `build_matrix`, computed with array operations.

    Args:
        table: Views in any order.
        extractor_cls: The scene's extractor class; must be `supports`-ed.
        progress: Called with the fraction of the work done, now and then.

    Raises:
        ValueError: the extractor's features are not the ones this module computes.
    """
    constants = scene_constants(extractor_cls)
    if constants is None:
        raise ValueError(f"no batch path for features {extractor_cls.feature_names}; use build_matrix")
    order, views = _in_stream_order(table)
    X = batch_features(views, constants, progress)
    return make_dataset(table, order, X, extractor_cls.feature_names)


class SortedViews(NamedTuple):
    """The numeric columns of views in `stream_order`, and a mask of each user's first row."""

    start_ts: np.ndarray
    duration_s: np.ndarray
    watch_s: np.ndarray
    size_bytes: np.ndarray
    first: np.ndarray


def _in_stream_order(table: ViewTable) -> tuple[np.ndarray, SortedViews]:
    """The permutation `stream_order` gives, and the numeric columns in that order.

    No sort when the table already is in that order (generated logs, logs written per user).
    Otherwise a stable sort by start time, then a stable sort by user: the same permutation
    as `stream_order`'s lexsort (user, then time, then position in the table), but the user
    sort is a radix sort (16-bit codes) and the time sort is fast on time-ordered logs.
    """
    first = _user_starts(table)
    if first is not None:
        return np.arange(len(table)), SortedViews(
            table.start_ts, table.duration_s, table.watch_s, table.size_bytes, first
        )
    codes, users = pd.factorize(table.user_id, sort=True)
    by_time = np.argsort(table.start_ts, kind="stable")
    user_by_time = codes.astype(np.uint16 if len(users) <= 1 << 16 else np.intp)[by_time]
    by_user = np.argsort(user_by_time, kind="stable")
    order = by_time[by_user]
    sorted_users = user_by_time[by_user]
    first = np.ones(len(table), dtype=bool)
    np.not_equal(sorted_users[1:], sorted_users[:-1], out=first[1:])
    columns = (table.start_ts, table.duration_s, table.watch_s, table.size_bytes)
    return order, SortedViews(*(column[order] for column in columns), first)


def _user_starts(table: ViewTable) -> np.ndarray | None:
    """Mask of each user's first row if ``table`` is in `stream_order` already, else None.

    That is: each user's rows are contiguous, users in ascending order, each user's start
    times non-decreasing (NaN times count as out of order).
    """
    users = table.user_id
    first = np.ones(len(users), dtype=bool)
    np.not_equal(users[1:], users[:-1], out=first[1:])
    runs = users[first]
    for lo in range(0, len(runs) - 1, _BLOCK_ROWS):  # blockwise: a shuffled log fails in the first block
        block = runs[lo : lo + _BLOCK_ROWS + 1]
        if not (block[1:] > block[:-1]).all():
            return None
    return first if (np.diff(table.start_ts)[~first[1:]] >= 0).all() else None


def batch_features(
    views: SortedViews, c: Mapping[str, float], progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """Feature rows of views in `stream_order`; see the module docstring."""
    n = len(views.start_ts)
    X = np.empty((n, len(WATCH_TIME_FEATURES)), dtype=np.float32)
    if not n:
        return X
    first_row = np.flatnonzero(views.first)
    _recurrences(X, views.watch_s, views.duration_s, first_row, np.diff(first_row, append=n), c, progress)
    # Blocks of whole users, about _BLOCK_ROWS rows each (a longer user makes a longer block).
    bounds = np.unique(first_row[np.searchsorted(first_row, np.arange(0, n, _BLOCK_ROWS), side="right") - 1])
    bounds = np.append(bounds, n)
    for b, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        for name, column in _block_columns(views, slice(lo, hi), c).items():
            X[lo:hi, WATCH_TIME_FEATURES.index(name)] = column
        if progress is not None and b % 64 == 0:
            progress(0.5 + 0.5 * lo / n)
    if progress is not None:
        progress(1.0)
    return X


def _block_columns(views: SortedViews, rows: slice, c: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The features (float64) of ``rows`` (whole users) that `_recurrences` does not write."""
    gap_max, quick_s, cap, recent_n = c["SESSION_GAP_S"], c["QUICK_SWIPE_S"], c["RATIO_CAP"], int(c["RECENT_N"])
    now, d, w, first = views.start_ts[rows], views.duration_s[rows], views.watch_s[rows], views.first[rows]
    size = views.size_bytes[rows].astype(np.float64)
    m = len(now)
    idx = np.arange(m)
    before = idx - np.maximum.accumulate(np.where(first, idx, 0))  # views of the user before each row

    def previous(values: np.ndarray, prior: float) -> np.ndarray:
        shifted = np.empty(m)
        shifted[1:] = values[:-1]
        shifted[first] = prior
        return shifted

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

    # Quick swipes among the last `recent_n` views (exact: sums of 0/1 values).
    quick = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(w < quick_s, out=quick[1:])
    window = np.minimum(before, recent_n)
    with np.errstate(invalid="ignore"):
        quick_share = np.where(window > 0, (quick[idx] - quick[idx - window]) / window, 0.0)

    return {
        "cand_duration_s": d,
        "cand_log_size": np.log1p(size),
        "cand_bitrate_kbps": size * 0.008 / d,
        "hist_log_views": np.log1p(before.astype(np.float64)),
        "last_ratio": previous(np.minimum(w / d, cap), c["PRIOR_RATIO"]),
        "last_watch_s": previous(w, c["PRIOR_WATCH_S"]),
        "quick_share_recent": quick_share,
        "gap_s": gap,
        "session_position": position,
        "session_elapsed_s": elapsed,
        "hour_of_day": np.mod(now, 86400.0) / 3600.0,
    }


def _recurrences(
    X: np.ndarray,
    watch: np.ndarray,
    duration: np.ndarray,
    first_row: np.ndarray,
    counts: np.ndarray,
    c: Mapping[str, float],
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
    # this view feeds the three averages, 9 its duration, 10 the ratio sum, 11-13 scratch.
    state = np.empty((14, n_users))
    columns = np.array([WATCH_TIME_FEATURES.index(name) for name in _RECURRENT])
    alpha = np.array([[c["FAST_ALPHA"]], [c["SLOW_ALPHA"]], [c["FAST_ALPHA"]]])
    state[0:3] = np.array([[c["PRIOR_RATIO"]], [c["PRIOR_RATIO"]], [c["PRIOR_WATCH_S"]]])
    at = first_row[np.argsort(-counts, kind="stable")]
    active = n_users - np.cumsum(np.bincount(counts))  # active[p]: users with more than p views
    steps = int(counts.max())
    for p in range(steps):
        k = int(active[p])
        rows, s = at[:k], state[:, :k]
        averages, inputs, ratio, view_watch, d, ratio_sum, scratch = s[0:3], s[6:9], s[6], s[8], s[9], s[10], s[11:14]
        np.take(watch, rows, out=view_watch)
        np.take(duration, rows, out=d)
        np.divide(view_watch, d, out=ratio)
        np.minimum(ratio, c["RATIO_CAP"], out=ratio)
        s[7] = ratio
        if p == 0:
            s[3] = c["PRIOR_RATIO"]
        else:
            np.divide(ratio_sum, p, out=s[3])
        np.subtract(s[0], s[1], out=s[4])
        np.multiply(s[0], d, out=s[5])
        X[rows[:, None], columns] = s[0:6].T
        if p == 0:
            averages[:] = inputs
            ratio_sum[:] = ratio
        else:
            np.subtract(inputs, averages, out=scratch)
            scratch *= alpha
            averages += scratch
            ratio_sum += ratio
        rows += 1
        if progress is not None and p % 256 == 0:
            progress(0.5 * p / steps)


def verify_batch_features(
    table: ViewTable, extractor_cls: type[FeatureExtractor], dataset: Dataset, rows: np.ndarray
) -> np.ndarray:
    """Check the batch features of ``rows`` against a streaming replay of their users.

    Args:
        table: The views ``dataset`` was built from.
        extractor_cls: The scene's extractor (the source of truth).
        dataset: Built by `build_matrix_batch`.
        rows: Mask of dataset rows to check; must hold *whole* users (their full streams).

    Returns:
        The streamed features of ``rows`` (float32).

    Raises:
        FeatureMismatchError: a feature differs beyond float32 tolerance (`RTOL`, `ATOL`).
    """
    streamed = stream_features(table.views(dataset.index[rows]), extractor_cls)
    batch = dataset.X[rows]
    close = np.isclose(batch, streamed, rtol=RTOL, atol=ATOL)
    if not close.all():
        row, col = (int(i) for i in np.argwhere(~close)[0])
        raise FeatureMismatchError(dataset.feature_names[col], row, float(batch[row, col]), float(streamed[row, col]))
    return streamed
