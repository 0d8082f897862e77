"""The parity gate: run the built package exactly as a device would and compare with training.

Workflow of `check_parity`: read the archive with `read_package` and load it with
`LoadedPackage.load` (the real client loader: isolated feature code, one-thread ONNX session,
self-test), then replay every parity view user by user through a fresh extractor from the
package. For view ``i`` the device-side features are computed at ``now = start_ts`` BEFORE
``update(view i)``, then inferred one row at a time. Each feature row must equal the training
side's ``features.npy`` row bit for bit (training ran the same code, so any difference means
the feature code changed or is non-deterministic); each prediction, and each quantile of a
model with quantile heads (a column each, named by `output_names`), must match
``predictions.npy`` within `PREDICTION_RTOL` (float32 tree sums differ from LightGBM's
doubles in the last bits, nothing more). The per-row features+infer time is the decision
latency a device would see.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pitahaya.client_runtime import LoadedPackage, View

from pitahaya.packaging._views import replay
from pitahaya.packaging.errors import PackagingError
from pitahaya.packaging.latency import Yardstick

#: Relative tolerance of ONNX vs LightGBM predictions ...
PREDICTION_RTOL = 1e-4
#: ... relative to at least this magnitude (target units, seconds), so near-zero predictions
#: are not refused over float32 rounding noise.
PREDICTION_FLOOR = 1.0
#: How many of the worst mismatches a report keeps.
WORST_ROWS = 10
PREDICTION = "prediction"


def output_names(quantiles: Sequence[float]) -> tuple[str, ...]:
    """Names of a model's output columns in reports: the point prediction, then ``q<level>``."""
    return (PREDICTION, *(f"q{level:g}" for level in quantiles))


@dataclass(frozen=True)
class ParityMismatch:
    """One refused value: which row, whose, which column, and the two values."""

    row: int
    user_id: str
    column: str
    expected: float
    got: float


@dataclass(frozen=True)
class ParityReport:
    """Outcome of the parity gate.

    Attributes:
        n_rows: Parity rows replayed.
        n_feature_mismatches: Rows whose device feature vector differs from training's.
        n_prediction_mismatches: Rows with a device prediction (or quantile) outside tolerance.
        max_abs_diff: Largest |device - training| prediction difference (quantiles included).
        max_rel_diff: Largest prediction difference relative to max(|expected|, floor).
        feature_mismatch_counts: Mismatching rows per feature name.
        worst: The largest mismatches (features first, then predictions).
        latency_p50_us: Median per-decision time (features + inference), microseconds.
        latency_p99_us: 99th percentile of the same.
        reference_p50_us: Median time of the latency yardstick's run, timed after each decision
            (`pitahaya.packaging.latency`).
        decision_cost: ``latency_p50_us / reference_p50_us``: the package's decision cost in
            units of the yardstick, which the machine's speed and load do not move.
    """

    n_rows: int
    n_feature_mismatches: int
    n_prediction_mismatches: int
    max_abs_diff: float
    max_rel_diff: float
    feature_mismatch_counts: dict[str, int] = field(default_factory=dict)
    worst: tuple[ParityMismatch, ...] = ()
    latency_p50_us: float = 0.0
    latency_p99_us: float = 0.0
    reference_p50_us: float = 0.0
    decision_cost: float = 0.0

    @property
    def passed(self) -> bool:
        return self.n_rows > 0 and self.n_feature_mismatches == 0 and self.n_prediction_mismatches == 0

    def summary(self) -> str:
        """Human-readable verdict naming the features and rows that failed."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"parity {verdict}: {self.n_rows} rows, {self.n_feature_mismatches} feature mismatches, "
            f"{self.n_prediction_mismatches} prediction mismatches "
            f"(max abs diff {self.max_abs_diff:.3g}, max rel diff {self.max_rel_diff:.3g}); "
            f"decision latency p50 {self.latency_p50_us:.0f} us, p99 {self.latency_p99_us:.0f} us "
            f"(cost {self.decision_cost:.1f}x the yardstick's {self.reference_p50_us:.1f} us)"
        ]
        if self.n_rows == 0:
            lines.append("  no parity rows: nothing was checked")
        if self.feature_mismatch_counts:
            counts = ", ".join(f"{name} ({n} rows)" for name, n in self.feature_mismatch_counts.items())
            lines.append(f"  features differing from training: {counts}")
        for m in self.worst:
            lines.append(f"  row {m.row} user {m.user_id} {m.column}: expected {m.expected!r}, got {m.got!r}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (logged to MLflow as ``parity_report.json``)."""
        return {**asdict(self), "worst": [asdict(m) for m in self.worst], "passed": self.passed}


def _feature_mismatches(
    expected: np.ndarray, got: np.ndarray, names: Sequence[str], views: Sequence[View]
) -> tuple[np.ndarray, dict[str, int], list[ParityMismatch]]:
    """Rows with any differing feature, counts per feature, and the largest difference per feature."""
    differs = ~((expected == got) | (np.isnan(expected) & np.isnan(got)))
    counts = {names[j]: int(n) for j, n in enumerate(differs.sum(axis=0)) if n}
    worst = []
    for j in np.flatnonzero(differs.any(axis=0)).tolist():
        rows = np.flatnonzero(differs[:, j])
        i = int(rows[np.argmax(np.abs(got[rows, j].astype(np.float64) - expected[rows, j]))])
        worst.append(ParityMismatch(i, views[i].user_id, names[j], float(expected[i, j]), float(got[i, j])))
    return differs.any(axis=1), counts, worst


def check_parity(
    loaded: LoadedPackage,
    views: Sequence[View],
    expected_features: np.ndarray,
    expected_predictions: np.ndarray,
    *,
    progress: Callable[[float], None] | None = None,
) -> ParityReport:
    """Replay the parity views through a loaded package and compare with the training side.

    Args:
        loaded: The package as the client runtime loaded it.
        views: Parity views, each user's stream in time order (``views.csv.gz``).
        expected_features: Training-side float32 features, one row per view.
        expected_predictions: The trained model's predictions on those rows: one per view, or
            one row per view of the point and each quantile level (the manifest's outputs).
        progress: Called with the fraction of rows done.

    Returns:
        The report; the caller decides to refuse (`ParityReport.passed`).

    Raises:
        PackagingError: the training-side arrays do not have one row per view and one column per feature.
        FeatureCodeError: the package's feature code raised (from the client runtime).
    """
    names = loaded.manifest.feature_names
    outputs = loaded.manifest.outputs
    n = len(views)
    if expected_features.shape != (n, len(names)) or expected_predictions.size != n * outputs:
        raise PackagingError(
            f"parity arrays have shapes {expected_features.shape} and {expected_predictions.shape}, "
            f"expected ({n}, {len(names)}) and ({n}, {outputs}): the run's parity artifacts do not match its "
            "views, the scene's feature list or the model's quantile heads"
        )
    got_features = np.empty((n, len(names)), dtype=np.float32)
    got_predictions = np.empty((n, outputs), dtype=np.float32)
    latencies_ns = np.empty(n, dtype=np.int64)
    reference_ns = np.empty(n, dtype=np.int64)
    yardstick = Yardstick()
    step = max(n // 100, 1)
    for row, extractor in replay(views, loaded.new_extractor):
        out = got_features[row : row + 1]
        started = time.perf_counter_ns()
        extractor.transform([views[row].as_candidate()], views[row].start_ts, out)
        got_predictions[row] = loaded.infer(out)
        latencies_ns[row] = time.perf_counter_ns() - started
        reference_ns[row] = yardstick.time_ns()  # right after: whatever slowed one slows the other
        if progress is not None and row % step == 0:
            progress(row / n)

    expected_features = expected_features.astype(np.float32, copy=False)
    expected_predictions = expected_predictions.astype(np.float32, copy=False).reshape(n, outputs)
    feature_rows, counts, worst_features = _feature_mismatches(expected_features, got_features, names, views)
    abs_diff = np.abs(got_predictions.astype(np.float64) - expected_predictions)
    rel_diff = abs_diff / np.maximum(np.abs(expected_predictions.astype(np.float64)), PREDICTION_FLOOR)
    bad_predictions = ~(rel_diff <= PREDICTION_RTOL)  # NaN counts as a mismatch
    columns = output_names(loaded.manifest.quantiles)
    largest = np.argsort(-np.nan_to_num(rel_diff, nan=np.inf), axis=None, kind="stable")[:WORST_ROWS]
    worst_predictions = [
        ParityMismatch(
            int(i), views[i].user_id, columns[j], float(expected_predictions[i, j]), float(got_predictions[i, j])
        )
        for i, j in zip(*np.unravel_index(largest, rel_diff.shape), strict=True)
        if bad_predictions[i, j]
    ]
    latencies_us = latencies_ns / 1000.0
    latency_p50_us = float(np.percentile(latencies_us, 50)) if n else 0.0
    reference_p50_us = float(np.percentile(reference_ns, 50)) / 1000.0 if n else 0.0
    return ParityReport(
        n_rows=n,
        n_feature_mismatches=int(feature_rows.sum()),
        n_prediction_mismatches=int(bad_predictions.any(axis=1).sum()),
        max_abs_diff=float(abs_diff.max()) if n else 0.0,
        max_rel_diff=float(rel_diff.max()) if n else 0.0,
        feature_mismatch_counts=counts,
        worst=tuple((worst_features + worst_predictions)[:WORST_ROWS]),
        latency_p50_us=latency_p50_us,
        latency_p99_us=float(np.percentile(latencies_us, 99)) if n else 0.0,
        reference_p50_us=reference_p50_us,
        decision_cost=latency_p50_us / reference_p50_us if reference_p50_us > 0 else 0.0,
    )
