"""The signed release document that tells devices which package to run.

A release is a JSON document published by the registry as the TUF target
``releases/<scene>/<channel>.json``; devices obey it only after TUF verified it, so the
rollout rules are as trustworthy as the packages. A device places itself in a stable
bucket in ``[0, 10000)`` from ``sha256(scene:device_id)``: with ``rollout_percent = p`` the
devices whose bucket is below ``p * 100`` take ``package_version``, the others keep
``previous_version`` (if any). ``kill_switch`` sends every device to the default policy.
Rolling back is a *new* release pointing at an older package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from pitahaya.client_runtime.errors import ReleaseError
from pitahaya.client_runtime.package import parse_version, target_path, validate_scene_name

RELEASE_FORMAT_VERSION = 1
BUCKETS = 10_000


def release_target_path(scene: str, channel: str) -> str:
    """The TUF target path of a scene's release document on a channel."""
    return f"releases/{scene}/{channel}.json"


def rollout_bucket(device_id: str, scene: str) -> int:
    """A device's stable rollout bucket for a scene, uniform in ``[0, BUCKETS)``."""
    digest = hashlib.sha256(f"{scene}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Release:
    """One release of a scene on a channel.

    Attributes:
        scene: Scene name.
        channel: Channel name (``stable``, ``canary``, ...).
        release_id: Monotonic id assigned by the registry; later releases have larger ids.
        package_version: Version devices inside the rollout run.
        rollout_percent: Share of devices (0-100) that take ``package_version``.
        previous_version: Version the other devices run, or None for the default policy.
        kill_switch: When true every device uses the built-in default policy.
        created_at: ISO-8601 time the release was made.
        created_by: Who made it (token name).
    """

    scene: str
    channel: str
    release_id: int
    package_version: str
    rollout_percent: float = 100.0
    previous_version: str | None = None
    kill_switch: bool = False
    created_at: str = ""
    created_by: str = ""
    format_version: int = RELEASE_FORMAT_VERSION

    def version_for(self, device_id: str) -> str | None:
        """The package version this device should run, or None for the default policy."""
        if self.kill_switch:
            return None
        if rollout_bucket(device_id, self.scene) < round(self.rollout_percent * BUCKETS / 100):
            return self.package_version
        return self.previous_version

    def package_target(self, version: str) -> str:
        return target_path(self.scene, version)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Release:
        """Parse a release document.

        Raises:
            ReleaseError: not valid JSON or a field is missing or invalid.
        """
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("format_version") != RELEASE_FORMAT_VERSION:
                raise ReleaseError(f"unsupported release format_version {raw.get('format_version')!r}")
            release = cls(
                scene=validate_scene_name(str(raw["scene"])),
                channel=str(raw["channel"]),
                release_id=int(raw["release_id"]),
                package_version=str(raw["package_version"]),
                rollout_percent=float(raw["rollout_percent"]),
                previous_version=None if raw.get("previous_version") is None else str(raw["previous_version"]),
                kill_switch=bool(raw.get("kill_switch", False)),
                created_at=str(raw.get("created_at", "")),
                created_by=str(raw.get("created_by", "")),
            )
            parse_version(release.package_version)
            if release.previous_version is not None:
                parse_version(release.previous_version)
        except ReleaseError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ReleaseError(f"invalid release document: {type(e).__name__}: {e}") from e
        if not 0.0 <= release.rollout_percent <= 100.0:
            raise ReleaseError(f"rollout_percent must be within [0, 100], got {release.rollout_percent}")
        return release
