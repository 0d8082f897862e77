"""The event schema shared by training and devices: one finished view, one upcoming candidate.

A *view* is one video that a user started and then left (swiped away or finished, possibly
after replays, so ``watch_s`` may exceed ``duration_s``). Training reads logs of views; a
device records its own views as they finish. Both feed the same feature code, which is why
the schema lives here, in the light leaf that every other component imports.

A video's length or file size may be unknown (None): a feed item without its metadata, an
image post in a mixed feed (a fifth of KuaiRand's log). Such views are still recorded (the
scene's feature code decides what they count for: watch_time counts them in the user's
sitting only), and such candidates are still predicted; what needs a byte rate (a watch
*ratio*, a preload sized in seconds) skips them or falls back to the player's default. In arrays and on the containment wire, where None has no place, an
unknown length or size is 0 (`UNKNOWN`), a value a known one never takes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pitahaya.client_runtime.item_stats import ITEM_FIELDS, ItemStats

#: Column order of an event log (CSV header, JSONL keys).
VIEW_FIELDS: tuple[str, ...] = (
    "user_id",
    "video_id",
    "start_ts",
    "duration_s",
    "watch_s",
    "size_bytes",
)

#: An unknown length or size in arrays and packed records (never a known value: both are > 0).
UNKNOWN = 0

#: A pause longer than this between one view's end and a user's next view starts a new sitting
#: (session): the watch_time scene's features count position and time within one, and the
#: simulator cuts held-out logs into the sittings it replays at the same gap.
SESSION_GAP_S = 1800.0


@dataclass(frozen=True, slots=True)
class View:
    """One finished view.

    Attributes:
        user_id: Opaque user identifier.
        video_id: Opaque video identifier.
        start_ts: When playback started, in seconds since the Unix epoch.
        duration_s: Length of the video in seconds (> 0), None when unknown.
        watch_s: Seconds watched before leaving (>= 0; > duration_s means replays).
        size_bytes: Size of the whole video file in bytes (> 0), None when unknown.
        item: What the feed's server said of the video when it was upcoming (None: nothing).
    """

    user_id: str
    video_id: str
    start_ts: float
    duration_s: float | None
    watch_s: float
    size_bytes: int | None
    item: ItemStats | None = None

    def __post_init__(self) -> None:
        _check_length_and_size(self.duration_s, self.size_bytes)
        if not (self.watch_s >= 0 and math.isfinite(self.watch_s)):
            raise ValueError(f"watch_s must be a non-negative finite number, got {self.watch_s!r}")
        if not math.isfinite(self.start_ts):
            raise ValueError(f"start_ts must be finite, got {self.start_ts!r}")

    @property
    def end_ts(self) -> float:
        """When the user left this video."""
        return self.start_ts + self.watch_s

    @property
    def bitrate_bps(self) -> float | None:
        """Average bits per second of the video file, None when its length or size is unknown."""
        return _bitrate_bps(self.duration_s, self.size_bytes)

    def as_candidate(self) -> Candidate:
        """The upcoming-video view of this record (what was known before it played)."""
        return Candidate(self.video_id, self.duration_s, self.size_bytes, self.item)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> View:
        """Build a view from a mapping with the keys of `VIEW_FIELDS` and, optionally, its item stats.

        The stats are read from an ``item`` mapping (`to_dict`'s form) or from flat
        `ITEM_FIELDS` keys (a CSV row's form, empty when unknown); other keys are ignored.
        """
        return cls(
            user_id=str(data["user_id"]),
            video_id=str(data["video_id"]),
            start_ts=float(data["start_ts"]),
            duration_s=_optional(float, data["duration_s"]),
            watch_s=float(data["watch_s"]),
            size_bytes=_optional(int, data["size_bytes"]),
            item=item_from_dict(data),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An upcoming video whose watch time the device wants to predict.

    Attributes:
        video_id: Opaque video identifier.
        duration_s: Length of the video in seconds (> 0), None when unknown (the model still
            predicts; the plan preloads the default policy's bytes of it).
        size_bytes: Size of the whole file the player will fetch, in bytes (> 0), None when unknown.
        item: What the feed's server says of the video (`ItemStats`), passed through by the
            host app; None when it says nothing (the scene's priors apply).
    """

    video_id: str
    duration_s: float | None
    size_bytes: int | None
    item: ItemStats | None = None

    @property
    def bitrate_bps(self) -> float | None:
        """Average bits per second of the video file, None when its length or size is unknown."""
        return _bitrate_bps(self.duration_s, self.size_bytes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            video_id=str(data["video_id"]),
            duration_s=_optional(float, data["duration_s"]),
            size_bytes=_optional(int, data["size_bytes"]),
            item=item_from_dict(data),
        )


def _check_length_and_size(duration_s: float | None, size_bytes: int | None) -> None:
    """A view's length and size are unknown (None) or positive finite numbers."""
    if duration_s is not None and not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a positive finite number or None, got {duration_s!r}")
    if size_bytes is not None and not size_bytes > 0:
        raise ValueError(f"size_bytes must be positive or None, got {size_bytes!r}")


def _bitrate_bps(duration_s: float | None, size_bytes: int | None) -> float | None:
    if duration_s is None or size_bytes is None:
        return None
    return size_bytes * 8.0 / duration_s


def _optional(kind: type[float] | type[int], value: Any) -> Any:
    """``kind(value)``, or None for a missing value (None, or an empty CSV field)."""
    return None if value is None or value == "" else kind(value)


def item_from_dict(data: dict[str, Any]) -> ItemStats | None:
    """The item stats of a view or candidate mapping: an ``item`` mapping, flat `ITEM_FIELDS`, or none.

    Raises:
        ValueError, TypeError: the stats are present but malformed.
    """
    nested = data.get("item")
    if nested is not None:
        if not isinstance(nested, dict):
            raise TypeError(f"item must be a mapping, got {type(nested).__name__}")
        return ItemStats(
            views=int(nested["views"]),
            mean_watch_s=float(nested["mean_watch_s"]),
            mean_ratio=float(nested["mean_ratio"]),
            quick_share=float(nested["quick_share"]),
        )
    flat: list[Any] = [data.get(name) for name in ITEM_FIELDS]
    given = [value for value in flat if value not in (None, "")]
    if not given:
        return None
    if len(given) < len(flat):
        raise ValueError(f"item figures are partly missing: {dict(zip(ITEM_FIELDS, flat, strict=True))}")
    return ItemStats.from_row([float(value) for value in given])
