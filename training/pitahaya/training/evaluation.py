"""Evaluation beyond one MAE: segments, the preload effect, and the plots of a run.

- *Segments*: MAE on short vs long videos (``duration_s <= SHORT_VIDEO_S``), videos of unknown
  length (when the log has any) and new vs old users (fewer than ``NEW_USER_VIEWS`` earlier
  views in the log) — a model can win overall while losing where it matters (cold users).
- *Preload effect*: each test view is an upcoming candidate once. The fixed policy
  (`fixed_plan`, the runtime's default unless the scene's ``[policy]`` overrides it) and the
  model policy (`model_plan` with the scene's ``[policy]`` knobs, fed the model's
  prediction) each preload some bytes of it; bytes beyond what the user then watched are
  *wasted*, and a preload smaller than what was watched (up to the model policy's cap
  ``max_bytes``, where the player's own buffering takes over) is *short*. Only views whose
  length and size are known have bytes to account.
- *Quantile heads* (a scene with ``quantiles``): per level, the mean pinball loss and the
  coverage (share of actuals at or below the head's prediction: a calibrated head covers its
  level), and how often the heads cross (`quantile_metrics`).

`evaluate` scores the model and the baselines on the test rows with all of the above.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: plots are rendered to files only

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pitahaya.client_runtime import UNKNOWN, Candidate, PolicyKnobs, fixed_plan, model_plan
from pitahaya.training.baselines import global_median, user_running_mean
from pitahaya.training.dataset import Dataset, TimeSplit
from pitahaya.training.metrics import mae, xauc
from pitahaya.training.models import FittedModel

#: Videos up to this long count as short.
SHORT_VIDEO_S = 20.0
#: Users with fewer earlier views than this count as new.
NEW_USER_VIEWS = 20
_MB = 1e6


def views_before(user_ids: np.ndarray) -> np.ndarray:
    """For rows grouped by user in time order, how many rows of the same user come before each."""
    n = len(user_ids)
    first = np.ones(n, dtype=bool)
    if n:
        first[1:] = user_ids[1:] != user_ids[:-1]
    group = np.cumsum(first) - 1
    return np.arange(n) - np.flatnonzero(first)[group]


def segment_mae(dataset: Dataset, test: np.ndarray, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``<prefix>_mae_<segment>`` for every prediction set (test rows) and segment."""
    duration = dataset.duration_s[test]
    history = views_before(dataset.user_ids)[test]
    segments = {
        "short_video": (duration > 0) & (duration <= SHORT_VIDEO_S),
        "long_video": duration > SHORT_VIDEO_S,
        "new_user": history < NEW_USER_VIEWS,
        "old_user": history >= NEW_USER_VIEWS,
    }
    unknown = duration == UNKNOWN
    if unknown.any():  # a segment only logs that have such views report
        segments["unknown_length"] = unknown
    y = dataset.y[test]
    metrics = {}
    for prefix, p in predictions.items():
        for name, mask in segments.items():
            metrics[f"{prefix}_mae_{name}"] = mae(y[mask], p[mask])
    metrics.update({f"test_rows_{name}": float(mask.sum()) for name, mask in segments.items()})
    return metrics


def preload_effect(
    dataset: Dataset,
    test: np.ndarray,
    predicted_s: np.ndarray,
    policy: Mapping[str, Any],
    quantiles: tuple[float, ...] = (),
) -> dict[str, float]:
    """Bytes preloaded, wasted and short-preload share of both policies over the test views of known length and size.

    ``predicted_s`` is what sizes the preloads on a device: the model output the policy's
    ``preload_quantile`` names among the model's ``quantiles`` (the point prediction without one).
    """
    duration, size, watch = dataset.duration_s[test], dataset.size_bytes[test], dataset.y[test]
    measured = (duration > 0) & (size > 0)
    duration, size, watch, predicted_s = duration[measured], size[measured], watch[measured], predicted_s[measured]
    videos = dataset.video_ids[test][measured]
    fixed = np.empty(len(watch))
    model = np.empty(len(watch))
    for i, (video, d, s, p) in enumerate(
        zip(videos.tolist(), duration.tolist(), size.tolist(), predicted_s.tolist(), strict=True)
    ):
        candidate = [Candidate(str(video), d, int(s))]
        fixed[i] = fixed_plan(candidate, policy).total_bytes
        model[i] = model_plan(candidate, [p], policy, quantiles).total_bytes
    consumed = np.minimum(watch, duration) * (size / duration)
    cap = float(PolicyKnobs.from_policy(policy, quantiles).max_bytes)
    needed = np.minimum(consumed, cap)
    metrics = {}
    for name, planned in (("fixed", fixed), ("model", model)):
        metrics[f"preload_mb_{name}"] = float(planned.sum() / _MB)
        metrics[f"preload_wasted_mb_{name}"] = float(np.maximum(planned - consumed, 0.0).sum() / _MB)
        metrics[f"preload_short_share_{name}"] = float(np.mean(planned < needed)) if len(planned) else float("nan")
    if metrics["preload_mb_fixed"] > 0:
        metrics["preload_saving_pct"] = 100.0 * (1.0 - metrics["preload_mb_model"] / metrics["preload_mb_fixed"])
    return metrics


def level_name(level: float) -> str:
    """``q`` and the level in percent, exactly and without trailing zeros: 0.2 -> ``q20``, 0.125 -> ``q12.5``."""
    percent = f"{Decimal(repr(level)) * 100:f}"  # Decimal of the repr: 0.2 * 100 is 20.000000000000004
    return "q" + (percent.rstrip("0").rstrip(".") if "." in percent else percent)


def quantile_metrics(
    y: np.ndarray, heads: np.ndarray, levels: tuple[float, ...], prefix: str = "test_"
) -> dict[str, float]:
    """Per level ``test_pinball_<q>`` and ``test_coverage_<q>`` (`level_name`), and ``test_quantile_crossing``.

    Args:
        y: Actual values of the test rows.
        heads: The heads' predictions on them, one column per level.
        levels: The levels, increasing.
        prefix: What the names start with (``test_`` for training's test rows).

    Returns:
        The mean pinball loss and the share of rows with the actual at or below the prediction
        per level, and the share of rows where a lower level predicts more than a higher one.
    """
    metrics = {}
    for level, p in zip(levels, heads.T, strict=True):
        error = y - p
        metrics[f"{prefix}pinball_{level_name(level)}"] = float(np.mean(np.maximum(level * error, (level - 1) * error)))
        metrics[f"{prefix}coverage_{level_name(level)}"] = float(np.mean(y <= p))
    metrics[f"{prefix}quantile_crossing"] = float(np.mean(np.any(np.diff(heads, axis=1) < 0, axis=1)))
    return metrics


def evaluate(
    fitted: FittedModel, dataset: Dataset, split: TimeSplit, policy: Mapping[str, Any]
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of the model and the baselines on the test rows; also returns the model's test predictions."""
    y_test = dataset.y[split.test]
    median = global_median(dataset.y[split.train], len(dataset))
    outputs = fitted.predict_outputs(dataset.X[split.test])
    predictions = {
        "test": outputs[:, 0],
        "baseline_user_mean": user_running_mean(dataset, fallback=float(median[0]))[split.test],
        "baseline_global_median": median[split.test],
    }
    metrics = {
        # the early-stopped fit's: a refit model has learned the valid rows
        "valid_mae": fitted.valid_curve[fitted.best_iteration - 1]
        if fitted.refit
        else mae(dataset.y[split.valid], fitted.predict(dataset.X[split.valid])),
        "best_iteration": float(fitted.best_iteration),
    }
    for prefix, p in predictions.items():
        metrics[f"{prefix}_mae"] = mae(y_test, p)
        metrics[f"{prefix}_xauc"] = xauc(y_test, p)
    metrics.update(segment_mae(dataset, split.test, predictions))
    preload_output = PolicyKnobs.from_policy(policy, fitted.levels).preload_output
    metrics.update(preload_effect(dataset, split.test, outputs[:, preload_output], policy, fitted.levels))
    if fitted.heads:
        metrics.update(quantile_metrics(y_test, outputs[:, 1:], fitted.levels))
    return metrics, predictions["test"]


def importance_figure(importance: pd.DataFrame) -> Figure:
    """Horizontal bars of feature importance, most important on top."""
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(importance) + 1.2))
    ordered = importance.iloc[::-1]
    ax.barh(ordered["feature"], ordered["gain"])
    ax.set_xlabel("importance (gain)")
    ax.set_title("feature importance")
    fig.tight_layout()
    return fig


def predicted_vs_actual_figure(y: np.ndarray, p: np.ndarray, *, max_points: int = 20_000) -> Figure:
    """Hexbin of predicted against actual seconds watched on the test rows (log counts)."""
    sample = np.random.default_rng(0).permutation(len(y))[:max_points]
    top = float(np.quantile(y, 0.99)) if len(y) else 1.0
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.hexbin(y[sample], p[sample], gridsize=60, bins="log", extent=(0, top, 0, top), mincnt=1)
    ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.set_xlabel("actual watch (s)")
    ax.set_ylabel("predicted watch (s)")
    ax.set_title(f"test rows: predicted vs actual (n={len(y):,})")
    fig.tight_layout()
    return fig
