"""Reference predictors that every model must beat to be worth shipping.

- *global median*: one number for everyone, the median watch time of the training rows —
  the best constant under MAE, and roughly what a fixed preload size assumes.
- *user running mean*: the mean of the user's previous watch times (the global median until
  the user has history) — the obvious heuristic a device could run without any model.

Both are causal: a row's prediction uses only earlier rows, like the model's features.
"""

from __future__ import annotations

import numpy as np
from pitahaya.training.dataset import Dataset


def global_median(y_train: np.ndarray, n: int) -> np.ndarray:
    """Predict the median of ``y_train`` for each of ``n`` rows."""
    return np.full(n, float(np.median(y_train)))


def user_running_mean(dataset: Dataset, fallback: float) -> np.ndarray:
    """Predict, for each row, the mean watch time of the same user's earlier rows.

    Args:
        dataset: Rows grouped by user and in time order (as `build_matrix` makes them).
        fallback: Prediction for a user's first row.

    Returns:
        One float64 prediction per row.
    """
    y = dataset.y
    if not len(y):
        return np.empty(0)
    starts_user = np.r_[True, dataset.user_ids[1:] != dataset.user_ids[:-1]]
    first = np.flatnonzero(starts_user)
    group = np.cumsum(starts_user) - 1
    total_before = np.cumsum(y) - y
    sum_before = total_before - total_before[first][group]
    count_before = np.arange(len(y)) - first[group]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count_before > 0, sum_before / count_before, fallback)
