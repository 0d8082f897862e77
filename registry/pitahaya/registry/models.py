"""SQL tables of the registry (SQLAlchemy 2 typed declarative models).

Published packages and releases are append-only: a package row never changes once
committed, and a channel moves by inserting a new release row, so the tables are also the
history. Schema changes go through Alembic migrations in ``alembic/versions/``.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pitahaya.client_runtime.releases import release_target_path
from pitahaya.registry.clock import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the offset on storage)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base; its metadata is Alembic's ``target_metadata``."""

    #: Every model maps one plain table (SQLAlchemy types it as any FROM clause).
    __table__: ClassVar[Table]


class PackageRow(Base):
    """One published package archive; (scene, version) is immutable once committed."""

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("scene", "version", name="uq_packages_scene_version"),
        UniqueConstraint("target_path", name="uq_packages_target_path"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    target_path: Mapped[str] = mapped_column(String(255))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))


#: How a release came about: created, rolled back to an older package, its rollout reverted,
#: or the live release widened, paused, resumed, killed or unkilled.
ReleaseOperation = Literal["create", "rollback", "revert", "widen", "pause", "resume", "kill", "unkill"]


class ReleaseRow(Base):
    """One release of a scene on a channel; the newest row per channel is the live one.

    ``sha256`` is the digest of the signed release document. The document embeds the row id
    (``release_id``), so the digest is filled in after the insert, in the same transaction:
    it is never NULL once committed.
    """

    __tablename__ = "releases"
    __table_args__ = (Index("ix_releases_scene_channel", "scene", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    package_version: Mapped[str] = mapped_column(String(32))
    rollout_percent: Mapped[float] = mapped_column(Float)
    previous_version: Mapped[str | None] = mapped_column(String(32))
    kill_switch: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str | None] = mapped_column(String(64))
    paused: Mapped[bool] = mapped_column(default=False)
    platforms: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    app_version_min: Mapped[str | None] = mapped_column(String(32), nullable=True)
    app_version_max: Mapped[str | None] = mapped_column(String(32), nullable=True)
    operation: Mapped[ReleaseOperation] = mapped_column(String(32), default="create")
    #: Rollouts still in progress underneath this one, newest first (`Rollout` as dicts).
    earlier: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    @property
    def target_path(self) -> str:
        """The TUF target path of this channel's release document."""
        return release_target_path(self.scene, self.channel)


#: Where a quality gate stands (see `RolloutGate`).
GateState = Literal["observing", "paused", "rolled_back", "complete", "superseded"]


class RolloutGate(Base):
    """A quality gate driving one staged rollout: its spec, where it stands and what it saw.

    Created with the release that starts the rollout (``release_id``, at ``spec.steps[0]``).
    ``state`` is ``observing`` while the registry evaluates it, then ``paused``,
    ``rolled_back``, ``complete`` or ``superseded`` (another release replaced the rollout).
    The evidence counts telemetry from the minute the gate opened; ``step_inferences`` is the
    new version's decision count when the current step began (each step must see its own sample). ``history`` lists every
    automatic step with its evidence (also in the audit log).
    """

    __tablename__ = "rollout_gates"
    __table_args__ = (Index("ix_rollout_gates_scene_channel", "scene", "channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    release_id: Mapped[int] = mapped_column(Integer)
    package_version: Mapped[str] = mapped_column(String(32))
    baseline_versions: Mapped[list[str]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[GateState] = mapped_column(String(16), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    step_inferences: Mapped[float] = mapped_column(Float, default=0.0)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def steps(self) -> list[float]:
        return [float(step) for step in self.spec["steps"]]


class ApiToken(Base):
    """An API token: only the sha256 of its secret is stored, so a database leak reveals none.

    Tokens are 256-bit random secrets, so a fast hash is enough (no password stretching).
    A revoked token keeps its row (``revoked_at`` set) so the audit log's actors stay named.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TelemetryCounter(Base):
    """One aggregated device counter per scene, package version and minute.

    ``metric`` is a fixed name (``inferences``, ``fallbacks``, ``latency_us``, ...) and ``key``
    its label ('' when none, the reason for fallbacks, the bucket bound for latency). Reports
    add to ``value`` with an upsert, so workers aggregate in SQL without coordinating.
    ``package_version`` is '' for devices on the default policy.
    """

    __tablename__ = "telemetry_counters"
    __table_args__ = (UniqueConstraint("scene", "package_version", "minute", "metric", "key", name="uq_telemetry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene: Mapped[str] = mapped_column(String(64))
    package_version: Mapped[str] = mapped_column(String(32))
    minute: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class TelemetryDevice(Base):
    """A device seen in a minute for a scene and version: ``COUNT(*)`` of these rows is the UV.

    The row also adds up that device's decisions, fallbacks, timeouts and joined outcomes with
    their absolute error and its latency (sums and sums of squares): the quality gate compares versions device
    by device, because one device's decisions are alike (a slow phone is slow every time).
    """

    __tablename__ = "telemetry_devices"
    __table_args__ = (UniqueConstraint("scene", "package_version", "minute", "device_id", name="uq_telemetry_devices"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene: Mapped[str] = mapped_column(String(64))
    package_version: Mapped[str] = mapped_column(String(32))
    minute: Mapped[datetime] = mapped_column(UTCDateTime())
    device_id: Mapped[str] = mapped_column(String(128))
    inferences: Mapped[float] = mapped_column(Float, default=0.0)
    fallbacks: Mapped[float] = mapped_column(Float, default=0.0)
    timeouts: Mapped[float] = mapped_column(Float, default=0.0)
    outcomes: Mapped[float] = mapped_column(Float, default=0.0)
    abs_error_sum_s: Mapped[float] = mapped_column(Float, default=0.0)
    abs_error_sq_sum_s2: Mapped[float] = mapped_column(Float, default=0.0)
    latency_sum_us: Mapped[float] = mapped_column(Float, default=0.0)
    latency_sq_sum_us2: Mapped[float] = mapped_column(Float, default=0.0)


class TelemetryBatch(Base):
    """A telemetry batch already counted (by device and ``batch_id``), so a resent one is not.

    Its row commits with the batch's counters: both or neither. Rows older than
    `services.telemetry.BATCH_MEMORY` are deleted as reports arrive.
    """

    __tablename__ = "telemetry_batches"
    __table_args__ = (UniqueConstraint("device_id", "batch_id", name="uq_telemetry_batches"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128))
    batch_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class AuditEntry(Base):
    """Who changed what, when: one row per accepted write."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class TufMetadataRow(Base):
    """One signed version of a TUF role, when the metadata lives in the database
    (``tuf_storage = "database"``) so that every replica serves the same chain.

    A version is written unpublished while its publication is staged, and published (served)
    when the publication applies; a published version never changes. Only the newest
    published timestamp is kept: devices only ever fetch ``timestamp.json``.
    """

    __tablename__ = "tuf_metadata"

    role: Mapped[str] = mapped_column(String(80), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    published: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TufPendingPublication(Base):
    """The staged publication's journal (at most one row): the served names it adds and the
    targets it signs, so a registry starting after a crash applies or discards it."""

    __tablename__ = "tuf_pending_publication"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    files: Mapped[list[str]] = mapped_column(JSON)
    targets: Mapped[dict[str, str]] = mapped_column(JSON)
