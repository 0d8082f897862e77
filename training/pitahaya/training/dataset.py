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
import pandas as pd
from pitahaya.client_runtime import UNKNOWN, FeatureExtractor, View
from pitahaya.training.table import ViewTable

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
        video_ids: The video of each row.
        duration_s: Length of each row's video (segments, preload accounting).
        size_bytes: File size of each row's video.
    """

    X: np.ndarray
    y: np.ndarray
    user_ids: np.ndarray
    start_ts: np.ndarray
    index: np.ndarray
    feature_names: tuple[str, ...]
    video_ids: np.ndarray
    duration_s: np.ndarray
    size_bytes: np.ndarray

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


def stream_order(table: ViewTable) -> np.ndarray:
    """Indices that sort ``table`` by (user_id, start_ts), keeping file order among ties."""
    codes, _ = pd.factorize(table.user_id, sort=True)
    return np.lexsort((table.start_ts, codes))


def make_dataset(table: ViewTable, order: np.ndarray, X: np.ndarray, feature_names: Sequence[str]) -> Dataset:
    """The dataset of ``table``'s rows taken in ``order`` (see `stream_order`), with features ``X``.

    A log already in stream order is not copied: the dataset shares the table's columns.
    """
    in_order = len(order) == len(table) and bool((order == np.arange(len(order))).all())
    rows = table if in_order else table.take(order)
    return Dataset(
        X=X,
        y=rows.watch_s,
        user_ids=rows.user_id,
        start_ts=rows.start_ts,
        index=order,
        feature_names=tuple(feature_names),
        video_ids=rows.video_id,
        duration_s=rows.duration_s,
        size_bytes=rows.size_bytes,
    )


def build_matrix(
    views: Sequence[View] | ViewTable,
    extractor_cls: type[FeatureExtractor],
    progress: Callable[[float], None] | None = None,
) -> Dataset:
    """Replay each user's views through a fresh extractor and collect one row per view.

    This is the reference path: slow (one Python call per view) but it runs the scene's own
    code. `build_matrix_batch` computes the same matrix with array operations.

    Args:
        views: Views in any order; they are grouped by user and sorted by start time.
        extractor_cls: The scene's extractor class (``Scene.extractor_class()``).
        progress: Called with the fraction of rows done, now and then.

    Returns:
        The dataset, rows in (user_id, start_ts) order.
    """
    table = views if isinstance(views, ViewTable) else ViewTable.from_views(views)
    order = stream_order(table)
    X = stream_features(table.views(order), extractor_cls, progress)
    return make_dataset(table, order, X, extractor_cls.feature_names)


def stream_features(
    views: Sequence[View], extractor_cls: type[FeatureExtractor], progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """Feature rows of ``views`` (grouped by user, each user's in time order) from the scene's extractor."""
    X = np.empty((len(views), len(extractor_cls.feature_names)), dtype=np.float32)
    extractor: FeatureExtractor | None = None
    user = None
    for row, view in enumerate(views):
        if extractor is None or view.user_id != user:
            user, extractor = view.user_id, extractor_cls()
        extractor.transform([view.as_candidate()], view.start_ts, X[row : row + 1])
        extractor.update(view)
        if progress is not None and row % _PROGRESS_EVERY == 0:
            progress(row / len(views))
    if progress is not None:
        progress(1.0)
    return X


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


def held_out_from(views: Sequence[View], test_frac: float = 0.2) -> float:
    """Where the training job's time split starts its test period for these views.

    Uses `split_by_time` itself (on a featureless dataset), so the held-out period is exactly the
    one a model trained on ``views`` was evaluated on: what the preload simulator replays
    (`pitahaya.simulation.generated_sessions`) when it has the log but not the training run.
    """
    n = len(views)
    dataset = Dataset(
        X=np.empty((n, 0), dtype=np.float32),
        y=np.array([v.watch_s for v in views]),
        user_ids=np.array([v.user_id for v in views], dtype=str),
        start_ts=np.array([v.start_ts for v in views]),
        index=np.arange(n),
        feature_names=(),
        video_ids=np.array([v.video_id for v in views], dtype=str),
        duration_s=np.array([v.duration_s or UNKNOWN for v in views]),
        size_bytes=np.array([v.size_bytes or UNKNOWN for v in views]),
    )
    return split_by_time(dataset, test_frac=test_frac).test_from
