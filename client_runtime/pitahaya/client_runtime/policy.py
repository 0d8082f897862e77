"""The preload decision: how many bytes of each upcoming video to fetch ahead of time.

`fixed_plan` is the built-in default policy every device falls back to (the industry's
"3 videos x 800 KB"). `model_plan` turns predicted watch times into bytes: a video the
user will leave after 2 s needs 2 s of bytes (plus a safety margin), not 800 KB. A preload
only has to carry a video until the player's own buffering takes over, so it is capped
(``max_bytes``, by default the fixed policy's size) and floored at ``startup_s`` seconds of
the video's bitrate, so every start is covered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pitahaya.client_runtime.events import Candidate

#: Knobs of the default policy and the floors/caps of the model policy.
DEFAULT_POLICY: dict[str, Any] = {
    "fixed_count": 3,
    "fixed_bytes": 800_000,
    "count": 3,
    "min_bytes": 200_000,
    "max_bytes": 800_000,
    "startup_s": 1.0,
    "safety": 1.25,
}


@dataclass(frozen=True, slots=True)
class PreloadItem:
    """Preload the first ``bytes`` bytes of ``video_id``."""

    video_id: str
    bytes: int


@dataclass(frozen=True, slots=True)
class PreloadPlan:
    """The preload decision for the upcoming videos, in play order."""

    items: tuple[PreloadItem, ...]

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items)


def fixed_plan(candidates: Sequence[Candidate], policy: Mapping[str, Any] = DEFAULT_POLICY) -> PreloadPlan:
    """The default policy: the first ``fixed_bytes`` of the next ``fixed_count`` videos."""
    count = int(policy.get("fixed_count", DEFAULT_POLICY["fixed_count"]))
    size = int(policy.get("fixed_bytes", DEFAULT_POLICY["fixed_bytes"]))
    return PreloadPlan(tuple(PreloadItem(c.video_id, min(size, c.size_bytes)) for c in candidates[:count]))


def model_plan(
    candidates: Sequence[Candidate], watch_s: Sequence[float], policy: Mapping[str, Any] = DEFAULT_POLICY
) -> PreloadPlan:
    """Preload what the user is predicted to watch, within a floor and a cap.

    Args:
        candidates: Upcoming videos in play order.
        watch_s: Predicted seconds watched, one per candidate.
        policy: ``count`` videos to keep preloaded; per video, the predicted bytes times
            ``safety``, at least ``startup_s`` seconds of video and ``min_bytes``, at most
            ``max_bytes`` and the video's size.
    """
    knobs = {**DEFAULT_POLICY, **policy}
    count, safety = int(knobs["count"]), float(knobs["safety"])
    min_bytes, max_bytes, startup_s = int(knobs["min_bytes"]), int(knobs["max_bytes"]), float(knobs["startup_s"])
    items = []
    for cand, seconds in zip(candidates[:count], watch_s, strict=False):
        byte_rate = cand.size_bytes / cand.duration_s
        floor = max(min_bytes, startup_s * byte_rate)
        wanted = max(seconds, 0.0) * safety * byte_rate
        items.append(PreloadItem(cand.video_id, int(min(cand.size_bytes, max_bytes, max(floor, wanted)))))
    return PreloadPlan(tuple(items))
