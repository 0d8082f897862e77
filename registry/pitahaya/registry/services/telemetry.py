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
``outcomes``, ``abs_error_sum_s``, ``abs_error_sq_sum_s2`` (0 from runtimes that predate it),
``dropped_events``, ``fallbacks`` (reason), ``errors`` (where), ``latency_us`` (bucket upper
bound in µs of the layout the report used, ``+Inf`` for the overflow bucket: reports in the
9-bound layout of older runtimes keep their own bounds as keys; `latency_buckets` reads
either, or a mix, back as one histogram).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from pitahaya.client_runtime.errors import CallTimeoutError
from pitahaya.registry.models import TelemetryBatch, TelemetryCounter, TelemetryDevice
from pitahaya.registry.schemas import LATENCY_US_BOUNDS, LEGACY_LATENCY_US_BOUNDS, TelemetryReport, TelemetryWindow

#: A (scene, package version, minute) aggregate; package version '' is the default policy.
MinuteKey = tuple[str, str, datetime]

#: Prometheus UV windows as (label, minutes): distinct devices over the last N complete minutes.
UV_WINDOWS: tuple[tuple[str, int], ...] = (("1m", 1), ("5m", 5), ("1h", 60))

SCALAR_METRICS = ("inferences", "successes", "views", "outcomes", "abs_error_sum_s", "abs_error_sq_sum_s2")
OVERFLOW_KEY = "+Inf"
TIMEOUT_REASON = CallTimeoutError.reason
#: How long a batch id is remembered: a device resends a batch until it is answered, so this
#: covers a device that lost its answer and went offline for a while.
BATCH_MEMORY = timedelta(days=2)


def latency_key(index: int, bounds: tuple[int, ...] | list[int] = LATENCY_US_BOUNDS) -> str:
    """The ``key`` of latency bucket ``index`` of ``bounds``: its upper bound in µs, ``+Inf`` for the last."""
    return str(bounds[index]) if index < len(bounds) else OVERFLOW_KEY


@dataclass(frozen=True)
class LatencyBucket:
    """One stored latency bucket: observations in ``(lower_us, upper_us]``."""

    key: str
    lower_us: float
    upper_us: float
    count: float


def latency_buckets(counts: dict[str, float]) -> list[LatencyBucket]:
    """The stored ``latency_us`` counters as buckets with both edges, ordered by upper bound.

    A bucket's lower edge is the bound before it in its own layout (the current one, or the
    legacy 9-bound one for keys only it has; 0 for a first bucket), so a bucket with no
    neighbour stored still has its true width. The overflow bucket starts at the largest
    finite bound of the layouts present.
    """
    legacy_only = {str(b) for b in LEGACY_LATENCY_US_BOUNDS} - {str(b) for b in LATENCY_US_BOUNDS}
    lower_of: dict[str, float] = {}
    for layout in (LEGACY_LATENCY_US_BOUNDS, LATENCY_US_BOUNDS):  # the current layout wins a shared bound
        for index, bound in enumerate(layout):
            lower_of[str(bound)] = float(layout[index - 1]) if index else 0.0
    finite = [k for k in counts if k != OVERFLOW_KEY]
    uses_current = any(k not in legacy_only for k in finite) or not finite
    overflow_lower = float(LATENCY_US_BOUNDS[-1] if uses_current else LEGACY_LATENCY_US_BOUNDS[-1])
    buckets = []
    for key, count in counts.items():
        if key == OVERFLOW_KEY:
            buckets.append(LatencyBucket(key, overflow_lower, float("inf"), count))
            continue
        try:
            upper = float(key)
        except ValueError:
            continue  # not a bound: ignored
        buckets.append(LatencyBucket(key, min(lower_of.get(key, 0.0), upper), upper, count))
    return sorted(buckets, key=lambda b: (b.upper_us, b.lower_us))


def latency_quantile_us(counts: dict[str, float], quantile: float) -> float | None:
    """The ``quantile`` of a stored latency histogram, in µs; None when it is empty.

    Observations are taken as spread evenly over their bucket ``(lower, upper]`` (as
    Prometheus' ``histogram_quantile`` does), so the answer is interpolated within the bucket
    holding the quantile rather than its upper bound. Buckets of the legacy layout stored
    beside current ones overlap them; the spread makes that a mixture, not an error. A
    quantile in the overflow bucket is reported as that bucket's lower edge (a floor).
    """
    buckets = [b for b in latency_buckets(counts) if b.count > 0]
    total = sum(b.count for b in buckets)
    if not total:
        return None
    target = quantile * total
    edges = sorted({b.lower_us for b in buckets} | {b.upper_us for b in buckets if math.isfinite(b.upper_us)})

    def below(x: float) -> float:  # observations at or below x
        seen = 0.0
        for b in buckets:
            if x >= b.upper_us:
                seen += b.count
            elif x > b.lower_us:
                seen += b.count * (x - b.lower_us) / (b.upper_us - b.lower_us)
        return seen

    previous_x, previous_seen = 0.0, 0.0
    for x in edges:
        seen = below(x)
        if seen >= target:
            if seen <= previous_seen:
                return x
            return previous_x + (target - previous_seen) / (seen - previous_seen) * (x - previous_x)
        previous_x, previous_seen = x, seen
    return edges[-1] if edges else 0.0  # in the overflow bucket


#: What each device's row per (scene, version, minute) adds up: the quality gate compares
#: versions device by device (decisions of one device are alike), so it needs these per device.
DEVICE_TALLIES = (
    "inferences",
    "fallbacks",
    "timeouts",
    "outcomes",
    "abs_error_sum_s",
    "abs_error_sq_sum_s2",
    "latency_sum_us",
    "latency_sq_sum_us2",
)


def _device_tally(window: TelemetryWindow) -> dict[str, float]:
    """One window's contribution to its device's row; latency moments from the bucket midpoints
    (the overflow bucket counts as 1.5x the last bound)."""
    bounds = [0.0, *map(float, window.latency_us_bounds)]
    mids = [(low + high) / 2.0 for low, high in zip(bounds, bounds[1:], strict=False)] + [1.5 * bounds[-1]]
    counts = window.latency_us_counts
    return {
        "latency_sum_us": sum(c * m for c, m in zip(counts, mids, strict=False)),
        "latency_sq_sum_us2": sum(c * m * m for c, m in zip(counts, mids, strict=False)),
        "inferences": float(window.inferences),
        "fallbacks": float(max(window.inferences - window.successes, 0)),
        "timeouts": float(window.fallbacks.get(TIMEOUT_REASON, 0)),
        "outcomes": float(window.outcomes),
        "abs_error_sum_s": float(window.abs_error_sum_s),
        "abs_error_sq_sum_s2": float(window.abs_error_sq_sum_s2),
    }


@dataclass(frozen=True)
class _Upserts:
    """The three statements a report runs, built once per dialect and run with all its rows at once."""

    counters: Insert
    devices: Insert
    batch: Insert


@functools.cache
def _upserts(dialect: str) -> _Upserts:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    counters_table, devices_table = TelemetryCounter.__table__, TelemetryDevice.__table__
    counters = insert(counters_table)
    counters = counters.on_conflict_do_update(
        index_elements=["scene", "package_version", "minute", "metric", "key"],
        set_={"value": counters_table.c.value + counters.excluded.value},
    )
    devices = insert(devices_table)
    devices = devices.on_conflict_do_update(
        index_elements=["scene", "package_version", "minute", "device_id"],
        set_={name: devices_table.c[name] + devices.excluded[name] for name in DEVICE_TALLIES},
    )
    batch = insert(TelemetryBatch.__table__).on_conflict_do_nothing().returning(TelemetryBatch.__table__.c.id)
    return _Upserts(counters, devices, batch)


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

    tallies: dict[MinuteKey, dict[str, float]] = {}
    for window in report.windows:
        key = (report.scene, window.package_version or "", window.minute)
        devices.add(key)
        tally = tallies.setdefault(key, dict.fromkeys(DEVICE_TALLIES, 0.0))
        for name, value in _device_tally(window).items():
            tally[name] += value
        add(key, "reports", "", 1)
        for metric in SCALAR_METRICS:
            add(key, metric, "", getattr(window, metric))
        for reason, count in window.fallbacks.items():
            add(key, "fallbacks", reason, count)
        for where, count in window.errors.items():
            add(key, "errors", where, count)
        for index, count in enumerate(window.latency_us_counts):
            add(key, "latency_us", latency_key(index, window.latency_us_bounds), count)
    if report.windows and report.dropped_events:
        first = report.windows[0]
        add((report.scene, first.package_version or "", first.minute), "dropped_events", "", report.dropped_events)

    upserts = _upserts(session.get_bind().dialect.name)
    connection = session.connection()
    device_key = hashlib.sha256(report.device_id.encode()).hexdigest()
    if report.batch_id is not None:
        now = datetime.now(UTC)
        connection.execute(delete(TelemetryBatch).where(TelemetryBatch.received_at < now - BATCH_MEMORY))
        seen = {"device_id": device_key, "batch_id": report.batch_id, "received_at": now}
        if connection.execute(upserts.batch, seen).first() is None:
            session.commit()
            return set()  # counted when it first arrived: the device resent it after a lost answer
    counters = [
        {"scene": scene, "package_version": version, "minute": minute, "metric": metric, "key": label, "value": value}
        for (scene, version, minute, metric, label), value in sorted(increments.items())
    ]
    if counters:
        connection.execute(upserts.counters, counters)
    rows = [
        {"scene": scene, "package_version": version, "minute": minute, "device_id": device_key, **tally}
        for (scene, version, minute), tally in sorted(tallies.items())
    ]
    if rows:
        connection.execute(upserts.devices, rows)
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
    out: list[tuple[str, str, str, int]] = []
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
