"""The batch feature path: a scene's vectorized twin of its streaming extractor, checked against it.

A scene may name a batch module in ``scene.toml`` (``[scene] batch_features``); it lives with
the scene (``scenes/watch_time/batch_features.py``), is loaded like ``features.py``
(`Scene.batch_module`) and must not import this package. Its contract is one function::

    batch_features(features, *, start_ts, duration_s, watch_s, size_bytes, first, item, progress=None)

``features`` is the scene's loaded feature module (the source of truth: feature names, order
and constants come from it); the columns are NumPy arrays of the log in stream order (grouped
by user, each user's views in time order; ``first`` marks each user's first row); it returns
the float32 matrix the streaming extractor would compute, one row per view. ``item`` holds the
feed's figures of each view's video (`ViewTable.item`, zeros where there are none). This module puts
the log in that order, calls the function, and checks what it returns.

A changed *formula* in ``features.py`` does not flow into the batch module by itself; that
is why `verify_batch_features` replays sampled users through the streaming extractor and the
training job refuses to train (`FeatureMismatchError`) when the two disagree beyond float32
tolerance. A scene without a batch module trains through the streaming extractor.

Ordering: no sort at all when the log already is in stream order (generated logs and logs
written per user are); otherwise the same permutation as `stream_order`, computed faster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
from pitahaya.client_runtime import FeatureExtractor, Scene
from pitahaya.training.dataset import Dataset, make_dataset, stream_features
from pitahaya.training.errors import FeatureMismatchError
from pitahaya.training.table import ViewTable

#: Name of the function a scene's batch module defines.
BATCH_FUNCTION = "batch_features"
#: Rows per block of the stream-order check.
_BLOCK_ROWS = 1 << 15
#: Relative and absolute tolerance of the streaming check (a few float32 ulps).
RTOL, ATOL = 1e-5, 1e-5


def build_matrix_batch(table: ViewTable, scene: Scene, progress: Callable[[float], None] | None = None) -> Dataset:
    """The same dataset as `build_matrix`, computed by the scene's batch module.

    Args:
        table: Views in any order.
        scene: A scene with a batch module (``scene.batch_feature_source`` is set).
        progress: Called with the fraction of the work done, now and then.

    Raises:
        ValueError: the scene has no batch module, its module lacks `BATCH_FUNCTION`, the
            function returns a matrix of the wrong shape or type, or it cannot compute a
            feature ``features.py`` declares.
        FeatureCodeError: the scene's feature or batch module fails to import.
    """
    batch = scene.batch_module()
    if batch is None:
        raise ValueError(f"scene {scene.name!r} names no batch_features module; use build_matrix")
    compute = getattr(batch, BATCH_FUNCTION, None)
    if not callable(compute):
        raise ValueError(f"the batch feature module of scene {scene.name!r} defines no {BATCH_FUNCTION}()")
    features = scene.feature_module()
    names = tuple(features.Extractor.feature_names)
    order, views = _in_stream_order(table)
    X = compute(features, **views._asdict(), progress=progress)
    if not (isinstance(X, np.ndarray) and X.dtype == np.float32 and X.shape == (len(table), len(names))):
        got = f"{X.dtype} {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise ValueError(f"{BATCH_FUNCTION}() returned {got}; expected float32 {(len(table), len(names))}")
    return make_dataset(table, order, X, names)


class SortedViews(NamedTuple):
    """The numeric columns of views in `stream_order`, and a mask of each user's first row."""

    start_ts: np.ndarray
    duration_s: np.ndarray
    watch_s: np.ndarray
    size_bytes: np.ndarray
    first: np.ndarray
    item: np.ndarray


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
            table.start_ts, table.duration_s, table.watch_s, table.size_bytes, first, table.item_matrix()
        )
    codes, users = pd.factorize(table.user_id, sort=True)
    by_time = np.argsort(table.start_ts, kind="stable")
    user_by_time = codes.astype(np.uint16 if len(users) <= 1 << 16 else np.intp)[by_time]
    by_user = np.argsort(user_by_time, kind="stable")
    order = by_time[by_user]
    sorted_users = user_by_time[by_user]
    first = np.ones(len(table), dtype=bool)
    np.not_equal(sorted_users[1:], sorted_users[:-1], out=first[1:])
    return order, SortedViews(
        table.start_ts[order],
        table.duration_s[order],
        table.watch_s[order],
        table.size_bytes[order],
        first,
        table.item_matrix()[order],
    )


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
