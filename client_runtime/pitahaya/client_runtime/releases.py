"""The signed release document that tells devices which package to run.

A release is a JSON document published by the registry as the TUF target
``releases/<scene>/<channel>.json``; devices obey it only after TUF verified it, so the
rollout rules are as trustworthy as the packages. A device places itself in a stable
bucket in ``[0, 10000)`` from ``sha256(scene:device_id)``: with ``rollout_percent = p`` the
devices whose bucket is below ``p * 100`` take ``package_version``. ``targeting`` narrows the
rollout to platforms and an inclusive app-version range; while the release is ``paused`` its
rollout reaches nobody (halted, not reverted to the default policy). ``kill_switch`` sends
every device to the default policy. Rolling back is a *new* release pointing at an older
package.

A device the rollout does not reach keeps what it ran before the release: ``earlier`` lists
the rollouts still in progress underneath (newest first, each with its own percent and
targeting, over the same buckets), and ``previous_version`` is the version everyone else runs
(None: the default policy). So releasing 1.1.0 at 20 % while 1.0.0 was at 60 % over 0.9.0
moves buckets [0, 20 %) to 1.1.0, keeps [20 %, 60 %) on 1.0.0 and the rest on 0.9.0: a rollout
never sends a device to the default policy. Documents written before targeting, pause and
``earlier`` existed parse as "all devices, not paused, nothing underneath"; devices that
predate ``earlier`` read only ``previous_version``.
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
#: Most rollouts a document keeps underneath its own; a device below all of them runs ``previous_version``.
MAX_EARLIER_ROLLOUTS = 8


def release_target_path(scene: str, channel: str) -> str:
    """The TUF target path of a scene's release document on a channel."""
    return f"releases/{scene}/{channel}.json"


def rollout_bucket(device_id: str, scene: str) -> int:
    """A device's stable rollout bucket for a scene, uniform in ``[0, BUCKETS)``."""
    digest = hashlib.sha256(f"{scene}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Targeting:
    """Which devices a release's rollout may reach.

    Attributes:
        platforms: Platform names (e.g. ``android``, ``ios``), or None for every platform.
        app_version_min: Lowest host-app version (``MAJOR.MINOR.PATCH``, inclusive), or None.
        app_version_max: Highest host-app version (inclusive), or None.
    """

    platforms: tuple[str, ...] | None = None
    app_version_min: str | None = None
    app_version_max: str | None = None

    def __post_init__(self) -> None:
        for bound in (self.app_version_min, self.app_version_max):
            if bound is not None:
                parse_version(bound)
        if (
            self.app_version_min is not None
            and self.app_version_max is not None
            and parse_version(self.app_version_min) > parse_version(self.app_version_max)
        ):
            raise ValueError(f"app_version_min {self.app_version_min} is above app_version_max {self.app_version_max}")

    @property
    def is_everyone(self) -> bool:
        return self.platforms is None and self.app_version_min is None and self.app_version_max is None

    def matches(self, platform: str | None, app_version: str | None) -> bool:
        """Whether a device is inside the targeting.

        A device that does not say its platform (or app version) is outside any rule on it:
        a rollout limited to ``android`` must not reach devices that may not be Android.
        """
        if self.platforms is not None and platform not in self.platforms:
            return False
        if self.app_version_min is None and self.app_version_max is None:
            return True
        try:
            version = parse_version(app_version) if app_version is not None else None
        except ValueError:
            return False
        if version is None:
            return False
        if self.app_version_min is not None and version < parse_version(self.app_version_min):
            return False
        return self.app_version_max is None or version <= parse_version(self.app_version_max)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Targeting:
        """Parse the ``targeting`` object of a document (None or absent means everyone)."""
        if raw is None:
            return cls()
        platforms = raw.get("platforms")
        if platforms is not None and (
            not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms)
        ):
            raise ValueError(f"targeting.platforms must be a list of strings or null, got {platforms!r}")
        return cls(
            platforms=None if platforms is None else tuple(platforms),
            app_version_min=_optional_str(raw.get("app_version_min")),
            app_version_max=_optional_str(raw.get("app_version_max")),
        )


@dataclass(frozen=True)
class Rollout:
    """A rollout still in progress underneath a newer release: who runs ``package_version``.

    Attributes:
        package_version: Version the devices it reaches run.
        rollout_percent: Share of buckets (0-100) it reaches, counted from bucket 0.
        targeting: Which devices it may reach.
    """

    package_version: str
    rollout_percent: float
    targeting: Targeting = Targeting()

    def __post_init__(self) -> None:
        parse_version(self.package_version)
        if not 0.0 <= self.rollout_percent <= 100.0:
            raise ValueError(f"rollout_percent must be within [0, 100], got {self.rollout_percent}")

    def reaches(self, bucket: int, platform: str | None, app_version: str | None) -> bool:
        return bucket < percent_to_buckets(self.rollout_percent) and self.targeting.matches(platform, app_version)

    @property
    def reaches_everyone(self) -> bool:
        return self.rollout_percent >= 100.0 and self.targeting.is_everyone

    @classmethod
    def from_dict(cls, raw: Any) -> Rollout:
        if not isinstance(raw, dict):
            raise ValueError(f"an earlier rollout must be an object, got {type(raw).__name__}")
        return cls(
            package_version=str(raw["package_version"]),
            rollout_percent=float(raw["rollout_percent"]),
            targeting=Targeting.from_dict(raw.get("targeting")),
        )


def percent_to_buckets(percent: float) -> int:
    """How many buckets (from 0) a rollout of ``percent`` reaches."""
    return round(percent * BUCKETS / 100)


def layered(rollouts: list[Rollout], floor: str | None) -> tuple[tuple[Rollout, ...], str | None]:
    """Rollouts (newest first) over ``floor`` reduced to those that still decide some device.

    A rollout that reaches everyone becomes the floor (nothing under it matters); one whose
    buckets a newer rollout reaching every device already covers is dropped. Past
    `MAX_EARLIER_ROLLOUTS` the oldest are dropped: their devices fall to the floor.

    Returns:
        The kept rollouts, newest first, and the floor version.
    """
    kept: list[Rollout] = []
    covered = 0.0  # percent of buckets a newer rollout reaching every device already decides
    for rollout in rollouts:
        if rollout.reaches_everyone:
            return tuple(kept[:MAX_EARLIER_ROLLOUTS]), rollout.package_version
        if rollout.rollout_percent <= covered:
            continue
        kept.append(rollout)
        if rollout.targeting.is_everyone:
            covered = rollout.rollout_percent
    return tuple(kept[:MAX_EARLIER_ROLLOUTS]), floor


def _strict_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _earlier(raw: Any) -> tuple[Rollout, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_EARLIER_ROLLOUTS:
        raise ValueError(f"earlier must be a list of at most {MAX_EARLIER_ROLLOUTS} rollouts")
    return tuple(Rollout.from_dict(item) for item in raw)


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
        targeting: Which devices the rollout may reach; the rest keep what they ran.
        paused: When true the rollout is halted: every device keeps what it ran before.
        earlier: Rollouts still in progress underneath this one, newest first.
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
    targeting: Targeting = Targeting()
    paused: bool = False
    earlier: tuple[Rollout, ...] = ()
    format_version: int = RELEASE_FORMAT_VERSION

    def version_for(self, device_id: str, *, platform: str | None = None, app_version: str | None = None) -> str | None:
        """The package version this device should run, or None for the default policy.

        Args:
            device_id: The device's stable id (its rollout bucket comes from it).
            platform: The device's platform, matched against ``targeting.platforms``.
            app_version: The host app's ``MAJOR.MINOR.PATCH``, matched against the version range.
        """
        if self.kill_switch:
            return None
        bucket = rollout_bucket(device_id, self.scene)
        if not self.paused and self.own_rollout.reaches(bucket, platform, app_version):
            return self.package_version
        for rollout in self.earlier:
            if rollout.reaches(bucket, platform, app_version):
                return rollout.package_version
        return self.previous_version

    @property
    def own_rollout(self) -> Rollout:
        """This release's rollout as a `Rollout` (what a newer release keeps underneath it)."""
        return Rollout(self.package_version, self.rollout_percent, self.targeting)

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
                targeting=Targeting.from_dict(raw.get("targeting")),
                paused=_strict_bool(raw.get("paused", False), "paused"),
                earlier=_earlier(raw.get("earlier", [])),
            )
            parse_version(release.package_version)
            if release.previous_version is not None:
                parse_version(release.previous_version)
        except ReleaseError:
            raise
        # ArithmeticError: an integer too large for a float
        except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as e:
            raise ReleaseError(f"invalid release document: {type(e).__name__}: {e}") from e
        if not 0.0 <= release.rollout_percent <= 100.0:
            raise ReleaseError(f"rollout_percent must be within [0, 100], got {release.rollout_percent}")
        return release
