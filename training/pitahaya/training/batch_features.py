"""A vectorized twin of the watch-time scene's streaming extractor, for training on large logs.

The scene's ``features.py`` stays the source of truth: this module re-derives the same
features with NumPy over whole columns, reading the scene's own constants (session gap,
quick-swipe threshold, moving-average weights, priors) from the loaded feature module, so a
retuned constant flows into both paths. A changed *formula* cannot flow in by itself; that
is why `verify_batch_features` replays sampled users through the streaming extractor and
the training job refuses to train (`FeatureMismatchError`) when the two disagree beyond
float32 tolerance.

How: rows are sorted by (user, start time). Features of row ``j`` depend on the user's views
before ``j``: shifts and per-user cumulative sums give the last view, the gap, the quick-swipe
window and the session position. The moving averages are recurrences; they run as one loop
over *positions* (the k-th view of every user at once), with users ordered by view count so
the users still active at position k are a prefix of the state arrays. Each step performs the
same float64 operations as the streaming code, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pitahaya.client_runtime import FeatureExtractor
from pitahaya.training.dataset import Dataset, make_dataset, stream_features, stream_order
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
    order = stream_order(table)
    sorted_table = table.take(order)
    X = batch_features(sorted_table, constants, progress)
    return make_dataset(table, order, X, extractor_cls.feature_names)


def batch_features(
    table: ViewTable, c: Mapping[str, float], progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """Feature rows of a table already in (user, start time) order; see the module docstring."""
    n = len(table)
    gap_max, quick_s, cap, recent_n = c["SESSION_GAP_S"], c["QUICK_SWIPE_S"], c["RATIO_CAP"], int(c["RECENT_N"])
    now, d, w = table.start_ts, table.duration_s, table.watch_s
    size = table.size_bytes.astype(np.float64)
    idx = np.arange(n)

    # Per-user layout: first row of each user, group number, views before each row.
    user = table.user_id
    first = np.ones(n, dtype=bool)
    if n:
        first[1:] = user[1:] != user[:-1]
    group = np.cumsum(first) - 1
    first_row = np.flatnonzero(first)
    before = idx - first_row[group]

    ratio = np.minimum(w / d, cap)
    sequential = _recurrences(ratio, w, before, group, len(first_row), c, progress)

    def previous(values: np.ndarray, prior: float) -> np.ndarray:
        shifted = np.empty(n)
        shifted[1:] = values[:-1]
        shifted[first] = prior
        return shifted

    last_end = previous(now + w, np.nan)
    since_last = now - last_end
    gap = np.where(first, -1.0, np.minimum(np.maximum(since_last, 0.0), gap_max))

    # Sessions: a row starts one if it is a user's first or comes > gap_max after the last view.
    new_session = first | (since_last > gap_max)
    session_first = np.maximum.accumulate(np.where(new_session, idx, 0))
    prev_session_first = np.empty(n, dtype=np.int64)
    prev_session_first[1:] = session_first[:-1]
    prev_session_first[first] = 0
    in_session = ~first & (since_last <= gap_max)
    position = np.where(in_session, idx - prev_session_first, 0).astype(np.float64)
    elapsed = np.where(in_session, np.maximum(now - now[prev_session_first], 0.0), 0.0)

    # Quick swipes among the last `recent_n` views (exact: sums of 0/1 values).
    quick = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(w < quick_s, out=quick[1:])
    window = np.minimum(before, recent_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        quick_share = np.where(window > 0, (quick[idx] - quick[idx - window]) / window, 0.0)

    ewm_fast, ewm_slow, ewm_watch, mean_ratio = sequential
    columns = (
        d,
        np.log1p(size),
        size * 0.008 / d,
        np.log1p(before.astype(np.float64)),
        mean_ratio,
        ewm_fast,
        ewm_slow,
        ewm_fast - ewm_slow,
        ewm_watch,
        previous(ratio, c["PRIOR_RATIO"]),
        previous(w, c["PRIOR_WATCH_S"]),
        quick_share,
        gap,
        position,
        elapsed,
        np.mod(now, 86400.0) / 3600.0,
        ewm_fast * d,
    )
    X = np.empty((n, len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        X[:, j] = column
    if progress is not None:
        progress(1.0)
    return X


def _recurrences(
    ratio: np.ndarray,
    watch: np.ndarray,
    before: np.ndarray,
    group: np.ndarray,
    n_users: int,
    c: Mapping[str, float],
    progress: Callable[[float], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Moving averages and running mean ratio *before* each row, one step per view position."""
    n = len(ratio)
    counts = np.bincount(group, minlength=n_users)
    rank = np.empty(n_users, dtype=np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(n_users)
    by_position = np.lexsort((rank[group], before))  # position-major, busiest user first
    starts = np.searchsorted(before[by_position], np.arange(int(counts.max(initial=0)) + 1))
    inputs = np.stack([ratio[by_position], ratio[by_position], watch[by_position]])  # fast, slow, watch
    alpha = np.array([[c["FAST_ALPHA"]], [c["SLOW_ALPHA"]], [c["FAST_ALPHA"]]])
    state = np.array([[c["PRIOR_RATIO"]], [c["PRIOR_RATIO"]], [c["PRIOR_WATCH_S"]]]) * np.ones((3, n_users))
    sum_ratio = np.zeros(n_users)
    out = np.empty((4, n))
    steps = len(starts) - 1
    for p in range(steps):
        lo, hi = starts[p], starts[p + 1]
        k = hi - lo
        out[:3, lo:hi] = state[:, :k]
        out[3, lo:hi] = sum_ratio[:k] / p if p else c["PRIOR_RATIO"]
        x = inputs[:, lo:hi]
        if p == 0:
            state[:, :k] = x
        else:
            state[:, :k] += alpha * (x - state[:, :k])
        sum_ratio[:k] += x[0]
        if progress is not None and p % 256 == 0:
            progress(0.9 * p / steps)
    result = np.empty((4, n))
    result[:, by_position] = out
    return result[0], result[1], result[2], result[3]


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
