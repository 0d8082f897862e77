"""Forward aggregated device telemetry to MLflow, where ops already look.

Layout: one MLflow experiment per scene (``<scene>-monitoring``) and one run per package
version (``<scene>-<version>``, or ``<scene>-default-policy``), found again by its tag
``pitahaya.package_version``. A run starts at the package's publish time (the minute it was
pushed; for the default policy, or a package this registry does not hold, the first minute
forwarded), and each minute becomes one point per metric with the minute as its wall-clock
timestamp and *minutes since the run's start* as its step, so "Step" and "Time" both chart
sensibly. A late report re-logs its minute with the new totals (the newest point per step is
the true one); a report older than the run's start gets a negative step.

Metrics per minute (`summary_metrics`): ``inferences``, ``successes``, ``success_rate``,
``fallbacks`` and ``fallback_rate`` (all reasons), ``fallback_rate.<reason>`` and
``fallbacks.<reason>``, ``timeout_rate``, ``errors.<where>``, ``pv`` (views), ``uv``
(distinct devices), ``outcomes``, ``mae_s`` (online MAE of the joined outcomes) and, when
devices sent squared errors, ``abs_error_std_s``; ``latency_us_p50``/``p95``/``p99``
interpolated within the histogram bucket that holds them (`latency_quantile_us`);
``reports`` and ``dropped_events``. Rates are logged only for minutes with decisions.

Tags linking the run (set when it is created): ``pitahaya.scene``,
``pitahaya.package_version``, ``pitahaya.package_sha256``, ``pitahaya.published_at``,
``pitahaya.training_run_id`` and ``pitahaya.training_experiment_id`` (from the manifest),
``pitahaya.model_name`` / ``pitahaya.model_version`` / ``pitahaya.model_uri`` (the
registered model version the packager tagged with this package's sha256), and a
description linking them. `TelemetryForwarder.mark_release` adds the release:
``pitahaya.release_id``, ``pitahaya.release_channel``, ``pitahaya.rollout_percent``,
``pitahaya.fully_rolled_out`` (and a ``rollout_percent`` point at the release's time); a
release that fully rolls a version out also points the registered model's alias
``champion`` at its model version.

Workflow: the telemetry route calls `TelemetryForwarder.mark` with the minutes a report
touched, release call sites call `TelemetryForwarder.mark_release`; both only record. The
app's background task calls `TelemetryForwarder.flush` every
``telemetry_forward_interval_seconds`` (and once at shutdown), which reads each marked
minute's totals from SQL and does the MLflow calls. Failures are logged and what failed stays
marked for the next round: MLflow being down never loses or blocks ingestion, or a release.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.registry.models import PackageRow
from pitahaya.registry.services.telemetry import MinuteKey, MinuteSummary, latency_quantile_us, minute_summary

logger = logging.getLogger(__name__)

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
#: Fallback reason code of a call past its deadline (`pitahaya.client_runtime.CallTimeoutError`).
TIMEOUT_REASON = "timeout"
#: The registered-model alias of the version fully rolled out.
CHAMPION_ALIAS = "champion"
#: Minutes (and releases) kept for the next round while MLflow is unreachable; the oldest go first.
MAX_PENDING_MINUTES = 100_000
MAX_PENDING_RELEASES = 1_000


def experiment_name(scene: str) -> str:
    return f"{scene}-monitoring"


def run_name(scene: str, version: str) -> str:
    return f"{scene}-{version or 'default-policy'}"


def summary_metrics(summary: MinuteSummary) -> dict[str, float]:
    """What ops chart per minute: volumes, rates, failures by reason, latency quantiles, error."""
    inferences = summary.value("inferences")
    outcomes = summary.value("outcomes")
    fallbacks = summary.counters.get("fallbacks", {})
    metrics = {
        "inferences": inferences,
        "successes": summary.value("successes"),
        "fallbacks": sum(fallbacks.values()),
        "pv": summary.value("views"),
        "uv": float(summary.unique_devices),
        "outcomes": outcomes,
        "reports": summary.value("reports"),
        "dropped_events": summary.value("dropped_events"),
    }
    if inferences:
        metrics["success_rate"] = summary.value("successes") / inferences
        metrics["fallback_rate"] = sum(fallbacks.values()) / inferences
        metrics["timeout_rate"] = fallbacks.get(TIMEOUT_REASON, 0.0) / inferences
        for reason, count in fallbacks.items():
            metrics[f"fallback_rate.{_UNSAFE_KEY_CHARS.sub('_', reason)}"] = count / inferences
    if outcomes:
        mae = summary.value("abs_error_sum_s") / outcomes
        metrics["mae_s"] = mae
        squares = summary.value("abs_error_sq_sum_s2")
        if squares > 0.0 and outcomes >= 2:  # runtimes that predate squared errors send 0
            metrics["abs_error_std_s"] = math.sqrt(max(squares / outcomes - mae * mae, 0.0))
    for kind in ("fallbacks", "errors"):
        for label, count in summary.counters.get(kind, {}).items():
            metrics[f"{kind}.{_UNSAFE_KEY_CHARS.sub('_', label)}"] = count
    for quantile in LATENCY_QUANTILES:
        value = latency_quantile_us(summary.counters.get("latency_us", {}), quantile)
        if value is not None:
            metrics[f"latency_us_p{round(quantile * 100)}"] = value
    return metrics


@dataclass(frozen=True)
class ReleaseMark:
    """A release to show in MLflow (see `TelemetryForwarder.mark_release`); ``at`` in seconds since the epoch."""

    scene: str
    channel: str
    release_id: int
    package_version: str
    rollout_percent: float
    fully_rolled_out: bool
    manifest: dict[str, Any]
    at: float


@dataclass(frozen=True)
class _Package:
    sha256: str
    published_at: datetime
    manifest: dict[str, Any]


@dataclass(frozen=True)
class _Run:
    run_id: str
    start_ms: int


class TelemetryForwarder:
    """Logs marked minute aggregates and releases to MLflow; does nothing without a tracking URI.

    Args:
        tracking_uri: MLflow tracking URI (also its model registry), or None to switch forwarding off.
        client: An ``MlflowClient``-compatible object (tests may pass one bound to a local store).
        clock: Seconds since the epoch (when a release was marked).
    """

    def __init__(self, tracking_uri: str | None, client: Any = None, *, clock: Any = time.time) -> None:
        self.enabled = tracking_uri is not None or client is not None
        self._tracking_uri = tracking_uri
        self._client = client
        self._clock = clock
        self._pending: set[MinuteKey] = set()
        self._releases: deque[ReleaseMark] = deque(maxlen=MAX_PENDING_RELEASES)
        self._runs: dict[tuple[str, str], _Run] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # the shutdown flush may start while a periodic one runs

    def mark(self, keys: set[MinuteKey]) -> None:
        """Remember minutes to forward at the next flush (cheap; never touches MLflow)."""
        if self.enabled:
            with self._lock:
                self._pending |= keys
                if len(self._pending) > MAX_PENDING_MINUTES:
                    for key in sorted(self._pending, key=lambda k: k[2])[: len(self._pending) - MAX_PENDING_MINUTES]:
                        self._pending.discard(key)

    def mark_release(
        self,
        *,
        scene: str,
        channel: str,
        release_id: int,
        package_version: str,
        rollout_percent: float,
        fully_rolled_out: bool,
        manifest: dict[str, Any],
    ) -> None:
        """Record a published release for the next flush; never blocks, never raises for MLflow.

        The flush tags the version's monitoring run (created if needed) with the release, logs
        a ``rollout_percent`` point at the time of this call, and, when ``fully_rolled_out``,
        points the registered model's alias ``champion`` at the package's model version (the
        one the manifest names, else the one the packager tagged with the package's sha256),
        when that version exists in the tracking store. Call it for every release, by an
        operator or by the rollout gate; a no-op when forwarding is off.

        Args:
            scene: Scene of the release.
            channel: Release channel (``stable``, ...).
            release_id: The release's id (its row id, as in the signed release document).
            package_version: Version released.
            rollout_percent: Share of devices it targets, 0-100.
            fully_rolled_out: True when every device of the channel now runs it.
            manifest: The package's manifest (``manifest.json`` as a dict).
        """
        if not self.enabled:
            return
        mark = ReleaseMark(
            scene, channel, int(release_id), package_version, float(rollout_percent), bool(fully_rolled_out),
            dict(manifest), self._clock(),
        )  # fmt: skip
        with self._lock:
            self._releases.append(mark)

    def flush(self, sessions: sessionmaker[Session]) -> int:
        """Forward every marked minute and release; return how many minutes were logged.

        Never raises: whatever failed stays marked for the next round.
        """
        if not self.enabled:
            return 0
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, set()
                releases, self._releases = self._releases, deque(maxlen=MAX_PENDING_RELEASES)
            logged = 0
            try:
                for key in sorted(batch, key=lambda k: (k[2], k[0], k[1])):
                    scene, version, minute = key
                    with sessions() as session:
                        summary = minute_summary(session=session, key=key)
                        run = self._run(session, scene, version, first_minute=minute)
                    self._log(run, minute, summary_metrics(summary))
                    batch.discard(key)
                    logged += 1
                while releases:
                    with sessions() as session:
                        self._apply_release(session, releases[0])
                    releases.popleft()
            except Exception:  # MLflow down or misconfigured: keep the rest for the next round
                logger.exception(
                    "forwarding telemetry to MLflow failed; %d minutes and %d releases will be retried",
                    len(batch),
                    len(releases),
                )
                with self._lock:
                    self._pending |= batch
                    releases.extend(self._releases)
                    self._releases = releases
            return logged

    # ------------------------------------------------------------------ MLflow side
    def _log(self, run: _Run, minute: datetime, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        timestamp_ms = int(minute.timestamp() * 1000)
        step = (timestamp_ms - run.start_ms) // 60_000
        self._mlflow().log_batch(
            run.run_id,
            metrics=[Metric(name, value, timestamp_ms, step) for name, value in sorted(metrics.items())],
            synchronous=True,
        )

    def _apply_release(self, session: Session, mark: ReleaseMark) -> None:
        from mlflow.entities import Metric, RunTag

        client = self._mlflow()
        run = self._run(session, mark.scene, mark.package_version, first_minute=None, at=mark.at)
        tags = {
            "pitahaya.release_id": str(mark.release_id),
            "pitahaya.release_channel": mark.channel,
            "pitahaya.rollout_percent": f"{mark.rollout_percent:g}",
            "pitahaya.fully_rolled_out": str(mark.fully_rolled_out).lower(),
        }
        at_ms = int(mark.at * 1000)
        client.log_batch(
            run.run_id,
            metrics=[Metric("rollout_percent", mark.rollout_percent, at_ms, (at_ms - run.start_ms) // 60_000)],
            tags=[RunTag(k, v) for k, v in tags.items()],
            synchronous=True,
        )
        if not mark.fully_rolled_out:
            return
        package = _package(session, mark.scene, mark.package_version)
        found = self._model_version(mark.scene, mark.manifest, package.sha256 if package else None)
        if found is None:
            logger.info(
                "no registered model version for %s %s in MLflow: alias %s not set",
                mark.scene,
                mark.package_version,
                CHAMPION_ALIAS,
            )
            return
        name, number = found
        client.set_registered_model_alias(name, CHAMPION_ALIAS, number)

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._tracking_uri)
        return self._client

    def _model_version(self, scene: str, manifest: dict[str, Any], sha256: str | None) -> tuple[str, str] | None:
        """The registered model version of a package: named by the manifest, or tagged with its digest."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow()
        provenance = manifest.get("mlflow") or {}
        name, number = provenance.get("model_name"), provenance.get("model_version")
        if name and number:
            try:
                client.get_model_version(str(name), str(number))
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                return None
            return str(name), str(number)
        run_id = str(provenance.get("run_id") or "")
        if not _RUN_ID.match(run_id):
            return None
        for found in client.search_model_versions(f"run_id = '{run_id}'"):
            tags = found.tags or {}
            if sha256 is not None and tags.get("package.sha256") == sha256:
                return found.name, str(found.version)
            if sha256 is None and found.name == scene and tags.get("package.version") == manifest.get("version"):
                return found.name, str(found.version)
        return None

    def _run(
        self, session: Session, scene: str, version: str, *, first_minute: datetime | None, at: float | None = None
    ) -> _Run:
        """The monitoring run of a package version, found by tag or created once (see the module docstring)."""
        cached = self._runs.get((scene, version))
        if cached is not None:
            return cached
        client = self._mlflow()
        name = experiment_name(scene)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        label = version or "default-policy"
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`pitahaya.package_version` = '{label}'", max_results=1
        )
        if found:
            run = _Run(found[0].info.run_id, int(found[0].info.start_time))
        else:
            package = _package(session, scene, version)
            candidates = [t for t in (first_minute, package.published_at if package else None) if t is not None]
            start = min(candidates) if candidates else datetime.fromtimestamp(at or self._clock(), tz=UTC)
            start_ms = int(start.replace(second=0, microsecond=0).timestamp() * 1000)
            created = client.create_run(
                experiment_id,
                start_time=start_ms,
                run_name=run_name(scene, version),
                tags=self._link_tags(scene, label, package),
            )
            run = _Run(created.info.run_id, start_ms)
        self._runs[(scene, version)] = run
        return run

    def _link_tags(self, scene: str, label: str, package: _Package | None) -> dict[str, str]:
        tags = {"pitahaya.scene": scene, "pitahaya.package_version": label}
        if package is None:
            tags["mlflow.note.content"] = f"Devices of scene `{scene}` running `{label}`, per minute."
            return tags
        provenance = package.manifest.get("mlflow") or {}
        tags["pitahaya.package_sha256"] = package.sha256
        tags["pitahaya.published_at"] = package.published_at.isoformat(timespec="seconds")
        lines = [f"Devices of scene `{scene}` running package `{label}` (sha256 `{package.sha256[:12]}`), per minute."]
        if provenance.get("run_id"):
            tags["pitahaya.training_run_id"] = str(provenance["run_id"])
            lines.append(f"Training run: `{provenance['run_id']}`.")
        if provenance.get("experiment_id"):
            tags["pitahaya.training_experiment_id"] = str(provenance["experiment_id"])
            if provenance.get("run_id"):
                lines[-1] = (
                    f"Training run: [{provenance['run_id']}](#/experiments/{provenance['experiment_id']}"
                    f"/runs/{provenance['run_id']})."
                )
        found = self._model_version(scene, package.manifest, package.sha256)
        if found is not None:
            tags["pitahaya.model_name"], tags["pitahaya.model_version"] = found
            tags["pitahaya.model_uri"] = f"models:/{found[0]}/{found[1]}"
            lines.append(f"Model version: [{found[0]} v{found[1]}](#/models/{found[0]}/versions/{found[1]}).")
        tags["mlflow.note.content"] = "\n\n".join(lines)
        return tags


def _package(session: Session, scene: str, version: str) -> _Package | None:
    """The registry's record of a published package, or None (default policy, unknown version)."""
    if not version:
        return None
    row = session.execute(
        select(PackageRow.sha256, PackageRow.created_at, PackageRow.manifest).where(
            PackageRow.scene == scene, PackageRow.version == version
        )
    ).first()
    if row is None:
        return None
    sha256, created_at, manifest = row
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return _Package(sha256, created_at, dict(manifest or {}))
