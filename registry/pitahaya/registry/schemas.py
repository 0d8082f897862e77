"""Request and response bodies of the HTTP API (pydantic), kept apart from the SQL tables.

``*Public`` models list exactly what a response may show, so a column added to a table
never leaks by accident; ``*Create`` models validate what a caller may send.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pitahaya.client_runtime.package import parse_version

#: Channels become TUF target paths, so they are restricted like scene names.
CHANNEL_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class PackagePublic(BaseModel):
    """A published package as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    scene: str
    version: str
    sha256: str
    size_bytes: int
    target_path: str
    created_at: datetime


class ReleaseCreate(BaseModel):
    """Body of ``POST /api/v1/scenes/{scene}/releases``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="Package version devices inside the rollout run, e.g. 1.0.0.")
    channel: str = Field(default="stable", pattern=CHANNEL_PATTERN)
    rollout_percent: float = Field(default=100.0, ge=0.0, le=100.0)
    kill_switch: bool = False

    @field_validator("version")
    @classmethod
    def _version_is_semver(cls, version: str) -> str:
        parse_version(version)
        return version


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
    target_path: str
    sha256: str
    created_at: datetime
    created_by: str
