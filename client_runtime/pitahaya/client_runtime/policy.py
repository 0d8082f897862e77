"""The preload decision: how many bytes of each upcoming video to fetch ahead of time.

`fixed_plan` is the built-in default policy every device falls back to (the industry's
"3 videos x 800 KB"). `model_plan` turns predicted watch times into bytes: a video the
user will leave after 2 s needs 2 s of bytes (plus start-up margin), not 800 KB.
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
    """Preload what the user is predicted to watch, with a safety margin and a floor.

    Args:
        candidates: Upcoming videos in play order.
        watch_s: Predicted seconds watched, one per candidate.
        policy: ``count`` videos to keep preloaded, ``safety`` margin factor and
            ``min_bytes`` floor per video (covers start-up even for quick swipes).
    """
    count = int(policy.get("count", DEFAULT_POLICY["count"]))
    safety = float(policy.get("safety", DEFAULT_POLICY["safety"]))
    floor = int(policy.get("min_bytes", DEFAULT_POLICY["min_bytes"]))
    items = []
    for cand, seconds in zip(candidates[:count], watch_s, strict=False):
        wanted = max(seconds, 0.0) * safety * cand.size_bytes / cand.duration_s
        items.append(PreloadItem(cand.video_id, min(cand.size_bytes, max(floor, int(wanted)))))
    return PreloadPlan(tuple(items))
