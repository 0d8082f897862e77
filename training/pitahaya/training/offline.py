"""Offline evaluation of a built package through the device runtime, on a log's held-out period.

Training's ``test_mae`` scores the model on features computed by training. This scores what a
device would have answered: every user of the log gets a real `pitahaya.client_runtime.Runtime`
on the package archive (`LocalArchiveUpdater`: manifest and file hashes, feature code, ONNX
model, self-test, the runtime's clamps and fallbacks), is fed their views in time order with
`Runtime.record`, and is asked, as each view of the held-out period is about to play, for its
watch time (`Runtime.predict` with that view as the one candidate, carrying the figures a feed
server would have served: `ViewTable.with_item_stats`). The user-mean baseline is scored on the
same rows; a package whose model predicts quantiles has each level's coverage and pinball loss
scored on them too, as the runtime answered them (sorted, clamped).
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pitahaya.client_runtime import Isolation, LocalArchiveUpdater, Runtime, View
from pitahaya.training.dataset import held_out_from, stream_order
from pitahaya.training.evaluation import quantile_metrics
from pitahaya.training.metrics import mae, xauc
from pitahaya.training.table import ViewTable


@dataclass(frozen=True)
class OfflineEvaluation:
    """What the device runtime answered for the held-out views of a log.

    Attributes:
        version: The package version evaluated.
        rows: Held-out views predicted.
        users: Users (devices) replayed.
        test_from: Start of the held-out period (Unix time).
        mae: Mean absolute error of the runtime's answers, in seconds (a fallback answers 0 s:
            the default policy predicts nothing).
        xauc: XAUC of the runtime's answers.
        fallbacks: Decisions the package did not answer, by reason code.
        baseline_user_mean_mae: The same rows predicted by the user's mean earlier watch time.
        baseline_user_mean_xauc: Its XAUC.
        videos: Held-out views of known length (what a preload plan moves bytes for; a log
            without image posts has only those).
        videos_mae: The runtime's MAE on them.
        videos_xauc: Its XAUC on them.
        quantiles: For a model with quantile heads, per level ``pinball_<q>`` (mean pinball
            loss) and ``coverage_<q>`` (share of rows watched at most that long; a calibrated
            level's is the level), and ``quantile_crossing``; empty otherwise.
    """

    version: str
    rows: int
    users: int
    test_from: float
    mae: float
    xauc: float
    fallbacks: dict[str, int]
    baseline_user_mean_mae: float
    baseline_user_mean_xauc: float
    videos: int
    videos_mae: float
    videos_xauc: float
    quantiles: dict[str, float] = field(default_factory=dict)


def evaluate_package(
    archive: str | Path,
    table: ViewTable,
    *,
    test_from: float | None = None,
    isolation: Isolation = "inline",
) -> OfflineEvaluation:
    """Replay ``table`` through the device runtime on ``archive`` and score its held-out answers.

    Args:
        archive: A package archive (built, or pulled through TUF).
        table: The whole log; its item figures are computed here when it has none.
        test_from: Start of the held-out period; None: the training job's split of this log
            (`held_out_from`), so the rows are the ones its ``test_mae`` scored.
        isolation: How the runtime contains the package (``inline`` by default: the answers
            are the same in every mode, only the cost per call differs).

    Raises:
        PackageFormatError: ``archive`` is not a package.
        ValueError: no view of the log is in the held-out period.
    """
    updater = LocalArchiveUpdater(archive)  # the scene its manifest names
    levels = updater.manifest.quantiles
    if table.item is None:
        table = table.with_item_stats()
    views = table.views(stream_order(table))
    if test_from is None:
        test_from = held_out_from(views)
    held_out_users = {v.user_id for v in views if v.start_ts >= test_from}
    if not held_out_users:
        raise ValueError(f"no view starts at or after {test_from}: nothing to evaluate")
    # a user's first view: the median watch time before the held-out period
    prior = float(np.median([v.watch_s for v in views if v.start_ts < test_from] or [0.0]))
    rows: list[tuple[float, float, float, bool, tuple[float, ...]]] = []  # see `_replay`
    fallbacks: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="pitahaya-offline-") as cache:
        for n, (user, stream) in enumerate(itertools.groupby(views, key=lambda v: v.user_id)):
            if user not in held_out_users:
                continue
            runtime = Runtime(
                None,
                updater.scene,
                f"offline-{user}",
                cache_dir=Path(cache) / str(n),
                updater=updater,
                telemetry=False,
                isolation=isolation,
            )
            try:
                runtime.refresh()
                rows += _replay(runtime, list(stream), test_from, prior, len(levels), fallbacks)
            finally:
                runtime.close()
    y, p, b, video, q = (np.array(column) for column in zip(*rows, strict=True))
    return OfflineEvaluation(
        version=updater.version,
        rows=len(y),
        users=len(held_out_users),
        test_from=float(test_from),
        mae=mae(y, p),
        xauc=xauc(y, p),
        fallbacks=dict(fallbacks),
        baseline_user_mean_mae=mae(y, b),
        baseline_user_mean_xauc=xauc(y, b),
        videos=int(video.sum()),
        videos_mae=mae(y[video], p[video]),
        videos_xauc=xauc(y[video], p[video]),
        quantiles=quantile_metrics(y, q, levels, prefix="") if levels else {},
    )


def _replay(
    runtime: Runtime, stream: list[View], test_from: float, prior: float, n_levels: int, fallbacks: Counter[str]
) -> list[tuple[float, float, float, bool, tuple[float, ...]]]:
    """One user's views through their runtime; (actual, predicted, user-mean, has a length,
    predicted quantiles) of each held-out view.

    A decision the package did not answer counts as 0 s predicted, at every level (the default
    policy predicts nothing), and its reason goes to ``fallbacks``.
    """
    rows = []
    watched = 0.0
    for n, view in enumerate(stream):
        if view.start_ts >= test_from:
            decision = runtime.predict([view.as_candidate()], now=view.start_ts)
            if decision.watch_s is None:
                fallbacks[decision.reason] += 1
            predicted = decision.watch_s[0] if decision.watch_s else 0.0
            quantiles = decision.watch_quantiles[0] if decision.watch_quantiles else (0.0,) * n_levels
            rows.append((view.watch_s, predicted, watched / n if n else prior, view.duration_s is not None, quantiles))
        runtime.record(view)
        watched += view.watch_s
    return rows
