"""Turn an event log into a training matrix by replaying it through the scene's extractor.

Every user's views are replayed in time order through one instance of the scene's
``Extractor`` — the same class that ships to devices. For each view the feature row is
computed *before* the view is folded into the state, with ``now`` = the view's start time:
exactly what a device knows when it must decide how much of that video to preload. The
label is the view's ``watch_s``.

`split_by_time` then cuts the rows at global time quantiles (train, then valid, then test),
so that evaluation never peeks into the future of the period it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pitahaya.client_runtime import FeatureExtractor, View

#: How often `build_matrix` reports progress, in rows.
_PROGRESS_EVERY = 10_000


@dataclass(frozen=True, eq=False)
class Dataset:
    """A feature matrix with its labels, rows grouped by user and in time order per user.

    Attributes:
        X: float32 features, shape ``(n, len(feature_names))``.
        y: float64 labels (seconds watched).
        user_ids: The user of each row (numpy string array).
        start_ts: Start time of each row's view.
        index: Position of each row's view in the list given to `build_matrix`.
        feature_names: Column names of ``X``.
    """

    X: np.ndarray
    y: np.ndarray
    user_ids: np.ndarray
    start_ts: np.ndarray
    index: np.ndarray
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """Boolean row masks of a `Dataset`; exactly one is true for every row.

    Attributes:
        train: Rows that start before the first cut.
        valid: Rows between the cuts (early stopping).
        test: Rows from the second cut on (evaluation).
        valid_from: First cut, a Unix time.
        test_from: Second cut, a Unix time.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_from: float
    test_from: float


def _stream_order(views: Sequence[View]) -> np.ndarray:
    """Indices that sort ``views`` by (user_id, start_ts), keeping file order among ties."""
    users = np.array([v.user_id for v in views], dtype=str)
    starts = np.array([v.start_ts for v in views], dtype=np.float64)
    return np.lexsort((starts, users))


def build_matrix(
    views: Sequence[View], extractor_cls: type[FeatureExtractor], progress: Callable[[float], None] | None = None
) -> Dataset:
    """Replay each user's views through a fresh extractor and collect one row per view.

    Args:
        views: Views in any order; they are grouped by user and sorted by start time.
        extractor_cls: The scene's extractor class (``Scene.extractor_class()``).
        progress: Called with the fraction of rows done, now and then.

    Returns:
        The dataset, rows in (user_id, start_ts) order.
    """
    order = _stream_order(views)
    n_features = len(extractor_cls.feature_names)
    X = np.empty((len(order), n_features), dtype=np.float32)
    extractor: FeatureExtractor | None = None
    user = None
    for row, i in enumerate(order.tolist()):
        view = views[i]
        if view.user_id != user:
            user, extractor = view.user_id, extractor_cls()
        extractor.transform([view.as_candidate()], view.start_ts, X[row : row + 1])
        extractor.update(view)
        if progress is not None and row % _PROGRESS_EVERY == 0:
            progress(row / len(order))
    if progress is not None:
        progress(1.0)
    return Dataset(
        X=X,
        y=np.array([views[i].watch_s for i in order], dtype=np.float64),
        user_ids=np.array([views[i].user_id for i in order], dtype=str),
        start_ts=np.array([views[i].start_ts for i in order], dtype=np.float64),
        index=order,
        feature_names=tuple(extractor_cls.feature_names),
    )


def split_by_time(dataset: Dataset, valid_frac: float = 0.1, test_frac: float = 0.2) -> TimeSplit:
    """Split rows at the global start-time quantiles ``1 - valid_frac - test_frac`` and ``1 - test_frac``.

    Args:
        dataset: Rows to split.
        valid_frac: Share of rows (by time) for early stopping.
        test_frac: Share of the latest rows for evaluation.

    Returns:
        The masks and the two cut times.

    Raises:
        ValueError: the fractions are not positive or leave no room for training.
    """
    if not (valid_frac > 0 and test_frac > 0 and valid_frac + test_frac < 1):
        raise ValueError(
            f"need valid_frac > 0, test_frac > 0 and valid_frac + test_frac < 1, got {valid_frac}, {test_frac}"
        )
    valid_from, test_from = np.quantile(dataset.start_ts, [1.0 - valid_frac - test_frac, 1.0 - test_frac])
    test = dataset.start_ts >= test_from
    train = dataset.start_ts < valid_from
    return TimeSplit(
        train=train, valid=~(train | test), test=test, valid_from=float(valid_from), test_from=float(test_from)
    )
