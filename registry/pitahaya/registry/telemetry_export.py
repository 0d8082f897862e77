"""Forward aggregated device telemetry to MLflow, where ops already look.

One MLflow experiment per scene (``<scene>-monitoring``) and one run per package version
(``<scene>-<version>``, or ``<scene>-default-policy``), tagged ``pitahaya.scene`` and
``pitahaya.package_version``. Each minute becomes one point per metric, with the minute as
its timestamp and ``minutes since the epoch`` as its step, so the run's charts are time
series.

Workflow: the telemetry route calls `TelemetryForwarder.mark` with the minutes a report
touched; the app's background task calls `TelemetryForwarder.flush` every
``telemetry_forward_interval_seconds``, which reads each marked minute's totals from SQL and
logs them. A late report re-logs its minute with the new totals (the newest point per step
is the true one). Forwarding failures are logged and the minutes stay marked for the next
round: MLflow being down never loses or blocks ingestion.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from pitahaya.registry.schemas import LATENCY_US_BOUNDS
from pitahaya.registry.services.telemetry import MinuteKey, MinuteSummary, latency_key, minute_summary

logger = logging.getLogger(__name__)

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
LATENCY_QUANTILES = (0.5, 0.95, 0.99)


def experiment_name(scene: str) -> str:
    return f"{scene}-monitoring"


def run_name(scene: str, version: str) -> str:
    return f"{scene}-{version or 'default-policy'}"


def summary_metrics(summary: MinuteSummary) -> dict[str, float]:
    """What ops chart per minute: volumes, rates, failures by reason, latency quantiles, error."""
    inferences = summary.value("inferences")
    outcomes = summary.value("outcomes")
    metrics = {
        "inferences": inferences,
        "successes": summary.value("successes"),
        "success_rate": summary.value("successes") / inferences if inferences else 1.0,
        "pv": summary.value("views"),
        "uv": float(summary.unique_devices),
        "outcomes": outcomes,
        "reports": summary.value("reports"),
        "dropped_events": summary.value("dropped_events"),
    }
    if outcomes:
        metrics["mae_s"] = summary.value("abs_error_sum_s") / outcomes
    for kind in ("fallbacks", "errors"):
        for label, count in summary.counters.get(kind, {}).items():
            metrics[f"{kind}.{_UNSAFE_KEY_CHARS.sub('_', label)}"] = count
    for quantile in LATENCY_QUANTILES:
        bound = latency_quantile_us(summary, quantile)
        if bound is not None:
            metrics[f"latency_us_p{round(quantile * 100)}"] = bound
    return metrics


def latency_quantile_us(summary: MinuteSummary, quantile: float) -> float | None:
    """Upper bound of the histogram bucket holding ``quantile`` (inf for the overflow bucket)."""
    counts = summary.counters.get("latency_us", {})
    ordered = [(index, counts.get(latency_key(index), 0.0)) for index in range(len(LATENCY_US_BOUNDS) + 1)]
    total = sum(count for _, count in ordered)
    if not total:
        return None
    seen = 0.0
    for index, count in ordered:
        seen += count
        if seen >= quantile * total:
            key = latency_key(index)
            return float("inf") if key == "+Inf" else float(key)
    return float("inf")


class TelemetryForwarder:
    """Logs marked minute aggregates to MLflow; does nothing without a tracking URI.

    Args:
        tracking_uri: MLflow tracking URI, or None to switch forwarding off.
        client: An ``MlflowClient``-compatible object (tests may pass one bound to a local store).
    """

    def __init__(self, tracking_uri: str | None, client: Any = None) -> None:
        self.enabled = tracking_uri is not None or client is not None
        self._tracking_uri = tracking_uri
        self._client = client
        self._pending: set[MinuteKey] = set()
        self._runs: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def mark(self, keys: set[MinuteKey]) -> None:
        if self.enabled:
            with self._lock:
                self._pending |= keys

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Forward every marked minute; return how many were logged. Failures stay marked."""
        if not self.enabled:
            return 0
        with self._lock:
            batch, self._pending = self._pending, set()
        logged = 0
        try:
            for key in sorted(batch):
                with sessions() as session:
                    summary = minute_summary(session=session, key=key)
                self._log(key, summary_metrics(summary))
                batch.discard(key)
                logged += 1
        except Exception:  # MLflow down or misconfigured: keep the rest for the next round
            logger.exception("forwarding telemetry to MLflow failed; %d minutes will be retried", len(batch))
            with self._lock:
                self._pending |= batch
        return logged

    def _log(self, key: MinuteKey, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        scene, version, minute = key
        client = self._mlflow()
        run_id = self._run_id(scene, version)
        timestamp_ms = int(minute.timestamp() * 1000)
        step = int(minute.timestamp() // 60)
        client.log_batch(
            run_id,
            metrics=[Metric(name, value, timestamp_ms, step) for name, value in sorted(metrics.items())],
            synchronous=True,
        )

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri)
        return self._client

    def _run_id(self, scene: str, version: str) -> str:
        """The monitoring run of a package version, found by tag or created once."""
        cached = self._runs.get((scene, version))
        if cached is not None:
            return cached
        client = self._mlflow()
        name = experiment_name(scene)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        found = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`pitahaya.package_version` = '{version or 'default-policy'}'",
            max_results=1,
        )
        if found:
            run_id: str = found[0].info.run_id
        else:
            run = client.create_run(
                experiment_id,
                run_name=run_name(scene, version),
                tags={"pitahaya.scene": scene, "pitahaya.package_version": version or "default-policy"},
            )
            run_id = run.info.run_id
        self._runs[(scene, version)] = run_id
        return run_id
