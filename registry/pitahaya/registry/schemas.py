"""Request and response bodies of the HTTP API (pydantic), kept apart from the SQL tables.

``*Public`` models list exactly what a response may show, so a column added to a table
never leaks by accident; ``*Create`` models validate what a caller may send.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

from pitahaya.client_runtime import LATENCY_US_BOUNDS
from pitahaya.client_runtime.releases import Targeting
from pitahaya.registry.gate.spec import GateSpec
from pitahaya.registry.models import GateState, ReleaseOperation, ReleaseRow
from pitahaya.registry.services.tokens import Role

#: Scene names as the package format defines them (`validate_scene_name`), published in the OpenAPI document.
SCENE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

#: Channels become TUF target paths, so they are restricted like scene names.
CHANNEL_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"

#: Package versions as the package format defines them (`parse_version`): ``MAJOR.MINOR.PATCH``.
VERSION_PATTERN = r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$"

#: Upper bounds (µs) of the device latency histogram of runtimes before the finer one
#: (`pitahaya.client_runtime.LATENCY_US_BOUNDS`, contract 2); devices in the field still send it.
LEGACY_LATENCY_US_BOUNDS: tuple[int, ...] = (25, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: The bucket layouts a report may use; one overflow bucket follows each.
LATENCY_US_LAYOUTS: tuple[tuple[int, ...], ...] = (LATENCY_US_BOUNDS, LEGACY_LATENCY_US_BOUNDS)

SemVer = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]


def _not_a_boolean(value: object) -> object:
    """JSON Schema's ``integer`` and ``number`` exclude ``true``/``false``, which pydantic's lax
    mode would read as 1 and 0: refuse them, so the server accepts exactly what the schema says."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _a_string(value: object) -> object:
    """A JSON ``date-time`` is a string; pydantic's lax mode would read a number as a Unix time."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 date-time string")
    return value


Count = Annotated[int, Field(ge=0, le=10**9), BeforeValidator(_not_a_boolean)]  # constraints first: the schema shows them
Percent = Annotated[float, BeforeValidator(_not_a_boolean)]
DateTime = Annotated[datetime, BeforeValidator(_a_string)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class PackagePublic(BaseModel):
    """A published package as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    scene: str
    version: str
    sha256: str
    size_bytes: int
    target_path: str
    created_at: datetime


class DelegationPublic(BaseModel):
    """A scene's publisher delegation: what a publisher needs to sign its next push.

    ``metadata`` is the current signed version of the role (TUF JSON), or null before the
    scene's first push. The publisher checks it against ``keys`` and ``threshold`` before
    signing the next version on top of it.
    """

    scene: str
    role: str
    threshold: int
    paths: list[str]
    keys: dict[str, dict[str, Any]] = Field(description="Public keys by TUF key id (securesystemslib form).")
    metadata: dict[str, Any] | None = Field(description="Current signed role metadata, null before its first push.")


class TargetingBody(BaseModel):
    """Which devices a rollout may reach; omitted fields mean "any"."""

    model_config = ConfigDict(extra="forbid")

    platforms: list[Label] | None = Field(default=None, min_length=1, max_length=16)
    app_version_min: SemVer | None = None
    app_version_max: SemVer | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> TargetingBody:
        self.to_targeting()  # raises ValueError on min > max
        return self

    def to_targeting(self) -> Targeting:
        platforms = tuple(self.platforms) if self.platforms is not None else None
        return Targeting(
            platforms=platforms, app_version_min=self.app_version_min, app_version_max=self.app_version_max
        )


class ReleaseCreate(BaseModel):
    """Body of ``POST /api/v1/scenes/{scene}/releases``."""

    model_config = ConfigDict(extra="forbid")

    version: SemVer = Field(description="Package version devices inside the rollout run, e.g. 1.0.0.")
    channel: str = Field(default="stable", pattern=CHANNEL_PATTERN)
    rollout_percent: Percent = Field(default=100.0, ge=0.0, le=100.0)
    kill_switch: StrictBool = False
    paused: StrictBool = False
    targeting: TargetingBody | None = None
    gate: GateSpec | None = Field(
        default=None,
        description="Roll out in steps that advance, pause or roll back on the devices' own figures; "
        "the release starts at the gate's first step, so rollout_percent is left out.",
    )

    @model_validator(mode="after")
    def _gate_owns_the_percent(self) -> ReleaseCreate:
        if self.gate is not None and {"rollout_percent", "kill_switch", "paused"} & self.model_fields_set:
            raise ValueError("a gated release starts at its gate's first step: leave out rollout_percent, kill_switch and paused")
        return self


class ReleaseWiden(BaseModel):
    """Body of ``POST .../channels/{channel}/widen``."""

    model_config = ConfigDict(extra="forbid")

    rollout_percent: Percent = Field(gt=0.0, le=100.0)


class ReleaseRollback(BaseModel):
    """Body of ``POST .../channels/{channel}/rollback``: the older version every device returns to."""

    model_config = ConfigDict(extra="forbid")

    version: SemVer


class KillSwitch(BaseModel):
    """Body of ``POST .../channels/{channel}/kill-switch``."""

    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool


class ReleasePublic(BaseModel):
    """A release as the API shows it; ``release_id`` matches the signed release document."""

    model_config = ConfigDict(from_attributes=True)

    release_id: int = Field(validation_alias="id")
    scene: str
    channel: str
    package_version: str
    rollout_percent: float
    previous_version: str | None
    kill_switch: bool
    paused: bool
    targeting: dict[str, object]
    earlier: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rollouts still in progress underneath this one, newest first: devices this "
        "release does not reach run the first that reaches them, else previous_version.",
    )
    operation: ReleaseOperation
    target_path: str
    sha256: str
    created_at: datetime
    created_by: str

    @model_validator(mode="before")
    @classmethod
    def _targeting_from_row(cls, data: object) -> object:
        """Rows keep targeting in three columns; the API shows one object."""
        if isinstance(data, ReleaseRow):
            return {
                "id": data.id,
                **{name: getattr(data, name) for name in _RELEASE_ROW_FIELDS},
                "targeting": {
                    "platforms": data.platforms,
                    "app_version_min": data.app_version_min,
                    "app_version_max": data.app_version_max,
                },
            }
        return data


class GatePublic(BaseModel):
    """A rollout's quality gate: where it stands, what it last saw, and every step it took."""

    model_config = ConfigDict(from_attributes=True)

    gate_id: int = Field(validation_alias="id")
    state: GateState
    package_version: str
    baseline_versions: list[str] = Field(description="Versions the devices outside the rollout run.")
    step: int = Field(description="Index of the current step in spec.steps.")
    steps: list[float]
    spec: dict[str, Any]
    evidence: dict[str, Any] | None = Field(description="The latest evaluation: verdict, checks, samples.")
    history: list[dict[str, Any]] = Field(description="Every automatic step with its evidence, oldest first.")
    created_at: datetime
    updated_at: datetime


class RolloutStatus(ReleasePublic):
    """A channel's live release and its newest quality gate (null if it never had one)."""

    gate: GatePublic | None


_RELEASE_ROW_FIELDS = (
    "scene",
    "channel",
    "package_version",
    "rollout_percent",
    "previous_version",
    "kill_switch",
    "paused",
    "earlier",
    "operation",
    "target_path",
    "sha256",
    "created_at",
    "created_by",
)


class TokenCreate(BaseModel):
    """Body of ``POST /api/v1/tokens``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Unique, e.g. ci-publisher.")
    role: Role


class TokenPublic(BaseModel):
    """A token as the API lists it: never the secret, never its hash."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    """The answer to creating a token: the only time ``secret`` is shown."""

    secret: str


class AuditEntryPublic(BaseModel):
    """One audit-log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, object]


def _utc_minute(value: datetime) -> datetime:
    """The UTC start of ``value``'s minute: a report's window belongs to the minute it falls in
    (a schema can say "date-time", not "seconds = 0", so any instant of the minute is accepted)."""
    if value.tzinfo is None:
        raise ValueError("minute needs a timezone (use UTC, e.g. 2026-01-01T12:34:00Z)")
    return value.astimezone(UTC).replace(second=0, microsecond=0)


#: Label-keyed counters: pydantic documents the key pattern as ``patternProperties``, which
#: alone lets any other key through; the server refuses them, so the schema must too.
_LABELS_ONLY: JsonDict = {"additionalProperties": False}


class TelemetryWindow(BaseModel):
    """One minute of one device's monitoring counters (contract 2)."""

    model_config = ConfigDict(extra="forbid")

    minute: DateTime = Field(description="The minute (its start, or any instant in it), ISO-8601 with timezone.")
    package_version: SemVer | None = Field(description="Package that served; null = default policy.")
    inferences: Count
    successes: Count = Field(description="At most inferences.")
    fallbacks: dict[Label, Count] = Field(default_factory=dict, max_length=32, json_schema_extra=_LABELS_ONLY)
    errors: dict[Label, Count] = Field(default_factory=dict, max_length=32, json_schema_extra=_LABELS_ONLY)
    latency_us_bounds: list[int] = Field(
        default_factory=lambda: list(LATENCY_US_BOUNDS),
        description="Bucket upper bounds (µs): the current layout, or the 9-bound one of older runtimes.",
        json_schema_extra={"enum": [list(layout) for layout in LATENCY_US_LAYOUTS]},
    )
    latency_us_counts: list[Count] = Field(
        default_factory=lambda: [0] * (len(LATENCY_US_BOUNDS) + 1),
        description="One count per bound, then the overflow bucket.",
        min_length=min(len(layout) for layout in LATENCY_US_LAYOUTS) + 1,
        max_length=max(len(layout) for layout in LATENCY_US_LAYOUTS) + 1,
    )
    views: Count = 0
    outcomes: Count = 0
    abs_error_sum_s: Annotated[float, BeforeValidator(_not_a_boolean)] = Field(
        default=0.0, ge=0.0, le=1e12, allow_inf_nan=False
    )
    abs_error_sq_sum_s2: Annotated[float, BeforeValidator(_not_a_boolean)] = Field(
        default=0.0,
        ge=0.0,
        le=1e18,
        allow_inf_nan=False,
        description="Sum of the squared absolute errors of the outcomes (0 from runtimes that predate it).",
    )

    @field_validator("minute")
    @classmethod
    def _minute_start(cls, value: datetime) -> datetime:
        return _utc_minute(value)

    @model_validator(mode="after")
    def _consistent(self) -> TelemetryWindow:
        if tuple(self.latency_us_bounds) not in LATENCY_US_LAYOUTS:
            raise ValueError(f"latency_us_bounds must be one of {[list(layout) for layout in LATENCY_US_LAYOUTS]}")
        if len(self.latency_us_counts) != len(self.latency_us_bounds) + 1:
            raise ValueError(f"latency_us_counts needs {len(self.latency_us_bounds) + 1} entries (last = overflow)")
        if self.successes > self.inferences:
            raise ValueError("successes cannot exceed inferences")
        return self


class TelemetryReport(BaseModel):
    """Body of ``POST /api/v1/telemetry`` (contract 2)."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=128)
    scene: str = Field(pattern=SCENE_PATTERN)
    batch_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Random id of the batch: a batch resent after a lost answer is counted once "
        "(ids are remembered for TELEMETRY_BATCH_MEMORY; null from runtimes that predate it).",
    )
    sent_at: DateTime
    windows: list[TelemetryWindow] = Field(max_length=1440)
    dropped_events: Count = 0
