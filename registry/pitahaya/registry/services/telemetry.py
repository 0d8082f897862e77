"""Device telemetry: add reports to per-minute aggregates in SQL, and read them back.

Workflow: ``POST /api/v1/telemetry`` validates a `TelemetryReport` and calls
`record_report`, which turns every window into counter increments keyed by (scene, package
version, minute, metric, key) and upserts them (``INSERT ... ON CONFLICT DO UPDATE value =
value + excluded``), so any number of workers aggregate without coordinating. Distinct
devices per (scene, version, minute) are rows of ``telemetry_devices`` (insert-or-ignore); their
count is the UV. Devices are stored by the sha256 of their id, never the id itself: the
registry needs to count them, not to know them. `minute_summary` and `counter_totals` read the
aggregates for MLflow and Prometheus; `recent_unique_devices` counts the UV of the last
complete minutes (`UV_WINDOWS`) for Prometheus, reading only the last hour's rows.

Metrics (``key`` in parentheses): ``reports``, ``inferences``, ``successes``, ``views``,
``outcomes``, ``abs_error_sum_s``, ``dropped_events``, ``fallbacks`` (reason), ``errors``
(where), ``latency_us`` (bucket upper bound, ``+Inf`` for the overflow bucket).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pitahaya.registry.models import TelemetryCounter, TelemetryDevice
from pitahaya.registry.schemas import LATENCY_US_BOUNDS, TelemetryReport

#: A (scene, package version, minute) aggregate; package version '' is the default policy.
MinuteKey = tuple[str, str, datetime]

#: Prometheus UV windows as (label, minutes): distinct devices over the last N complete minutes.
UV_WINDOWS: tuple[tuple[str, int], ...] = (("1m", 1), ("5m", 5), ("1h", 60))

SCALAR_METRICS = ("inferences", "successes", "views", "outcomes", "abs_error_sum_s")


def latency_key(index: int) -> str:
    """The ``key`` of latency bucket ``index``: its upper bound in µs, ``+Inf`` for the last."""
    return str(LATENCY_US_BOUNDS[index]) if index < len(LATENCY_US_BOUNDS) else "+Inf"


def record_report(*, session: Session, report: TelemetryReport) -> set[MinuteKey]:
    """Add one device report to the aggregates and commit.

    Returns:
        The minute aggregates it touched (to forward to MLflow).
    """
    increments: dict[tuple[str, str, datetime, str, str], float] = {}
    devices: set[MinuteKey] = set()

    def add(key: MinuteKey, metric: str, label: str, value: float) -> None:
        if value:
            slot = (*key, metric, label)
            increments[slot] = increments.get(slot, 0.0) + value

    for window in report.windows:
        key = (report.scene, window.package_version or "", window.minute)
        devices.add(key)
        add(key, "reports", "", 1)
        for metric in SCALAR_METRICS:
            add(key, metric, "", getattr(window, metric))
        for reason, count in window.fallbacks.items():
            add(key, "fallbacks", reason, count)
        for where, count in window.errors.items():
            add(key, "errors", where, count)
        for index, count in enumerate(window.latency_us_counts):
            add(key, "latency_us", latency_key(index), count)
    if report.windows and report.dropped_events:
        first = report.windows[0]
        add((report.scene, first.package_version or "", first.minute), "dropped_events", "", report.dropped_events)

    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for (scene, version, minute, metric, label), value in sorted(increments.items()):
        statement = insert(TelemetryCounter).values(
            scene=scene, package_version=version, minute=minute, metric=metric, key=label, value=value
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["scene", "package_version", "minute", "metric", "key"],
                set_={"value": TelemetryCounter.value + statement.excluded.value},
            )
        )
    device_key = hashlib.sha256(report.device_id.encode()).hexdigest()
    for scene, version, minute in sorted(devices):
        statement = insert(TelemetryDevice).values(
            scene=scene, package_version=version, minute=minute, device_id=device_key
        )
        session.execute(statement.on_conflict_do_nothing())
    session.commit()
    return devices


@dataclass
class MinuteSummary:
    """Everything known about one (scene, version, minute), ready to chart."""

    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    unique_devices: int = 0

    def value(self, metric: str, key: str = "") -> float:
        return self.counters.get(metric, {}).get(key, 0.0)


def minute_summary(*, session: Session, key: MinuteKey) -> MinuteSummary:
    scene, version, minute = key
    summary = MinuteSummary()
    rows = session.execute(
        select(TelemetryCounter.metric, TelemetryCounter.key, TelemetryCounter.value).where(
            TelemetryCounter.scene == scene,
            TelemetryCounter.package_version == version,
            TelemetryCounter.minute == minute,
        )
    )
    for metric, label, value in rows:
        summary.counters.setdefault(metric, {})[label] = value
    summary.unique_devices = (
        session.scalar(
            select(func.count()).where(
                TelemetryDevice.scene == scene,
                TelemetryDevice.package_version == version,
                TelemetryDevice.minute == minute,
            )
        )
        or 0
    )
    return summary


def counter_totals(*, session: Session) -> Iterable[tuple[str, str, str, str, float]]:
    """All-time sums as ``(scene, package_version, metric, key, value)`` (Prometheus counters)."""
    query = select(
        TelemetryCounter.scene,
        TelemetryCounter.package_version,
        TelemetryCounter.metric,
        TelemetryCounter.key,
        func.sum(TelemetryCounter.value),
    ).group_by(TelemetryCounter.scene, TelemetryCounter.package_version, TelemetryCounter.metric, TelemetryCounter.key)
    return [(s, v, m, k, float(total)) for s, v, m, k, total in session.execute(query)]


def recent_unique_devices(
    *, session: Session, now: datetime, windows: tuple[tuple[str, int], ...] = UV_WINDOWS
) -> list[tuple[str, str, str, int]]:
    """Distinct devices per (scene, package version) over the last complete minutes.

    A window of N minutes covers the N whole minutes before ``now``'s minute (which is still
    filling). Only (scene, version) pairs with counters in the longest window are counted, each
    with one query on the ``(scene, package_version, minute, ...)`` unique index, so the cost
    follows the last hour's rows, not the table. A device counts once per window however many
    minutes it reported in, so windows do not add up.

    Args:
        session: Database session.
        now: Timezone-aware current time.
        windows: (label, minutes) pairs.

    Returns:
        ``(scene, package_version, window label, devices)``, sorted; version '' is the default policy.
    """
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=max(minutes for _, minutes in windows))
    pairs = session.execute(
        select(TelemetryCounter.scene, TelemetryCounter.package_version)
        .where(TelemetryCounter.minute >= start, TelemetryCounter.minute < end)
        .distinct()
    ).all()
    counts = [
        func.count(
            case((TelemetryDevice.minute >= end - timedelta(minutes=minutes), TelemetryDevice.device_id)).distinct()
        )
        for _, minutes in windows
    ]
    out = []
    for scene, version in sorted(pairs):
        row = session.execute(
            select(*counts).where(
                TelemetryDevice.scene == scene,
                TelemetryDevice.package_version == version,
                TelemetryDevice.minute >= start,
                TelemetryDevice.minute < end,
            )
        ).one()
        out.extend((scene, version, label, int(row[i])) for i, (label, _) in enumerate(windows))
    return out
