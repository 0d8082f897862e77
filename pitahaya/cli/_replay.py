"""Replay held-out sessions through real client runtimes and count preload bytes.

Each simulated device is one held-out user: its views before the test cutoff are
recorded as history, then for every test view the device asks its `Runtime` what to
preload for the next `LOOKAHEAD` videos, and the same candidates are planned with the
fixed 3 x 800 KB policy for comparison. A video's preload is the largest amount planned
for it while it was upcoming. This is a byte-accounting replay, not a playback
simulation (no bandwidth, no stalls): it answers "how many bytes would each policy
fetch ahead, and how many of them were never watched".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pitahaya.client_runtime import Runtime, View, fixed_plan

LOOKAHEAD = 3
#: A start is "covered" when at least this much of the video was preloaded (or all that was watched).
STARTUP_S = 1.0


@dataclass
class ReplayStats:
    """Byte accounting of one or more replayed devices."""

    decisions: int = 0
    model_decisions: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    views: int = 0
    model_bytes: int = 0
    fixed_bytes: int = 0
    model_wasted: int = 0
    fixed_wasted: int = 0
    model_covered: int = 0
    fixed_covered: int = 0
    abs_errors: list[float] = field(default_factory=list)

    def merge(self, other: ReplayStats) -> None:
        for name in ("decisions", "model_decisions", "views", "model_bytes", "fixed_bytes", "model_wasted",
                     "fixed_wasted", "model_covered", "fixed_covered"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.fallback_reasons.items():
            self.fallback_reasons[reason] = self.fallback_reasons.get(reason, 0) + count
        self.latencies_s += other.latencies_s
        self.abs_errors += other.abs_errors


def streams_by_user(views: Iterable[View]) -> dict[str, list[View]]:
    """Each user's views, in the order given (time order for generated and sorted logs)."""
    streams: dict[str, list[View]] = {}
    for view in views:
        streams.setdefault(view.user_id, []).append(view)
    return streams


def held_out_users(streams: dict[str, list[View]], test_from: float, count: int, seed: int) -> list[str]:
    """Up to ``count`` users with at least a few views from ``test_from`` on, chosen reproducibly."""
    eligible = sorted(u for u, s in streams.items() if sum(v.start_ts >= test_from for v in s) >= 5)
    picked = np.random.default_rng(seed).choice(len(eligible), size=min(count, len(eligible)), replace=False)
    return [eligible[i] for i in sorted(picked)]


def replay_device(runtime: Runtime, stream: Sequence[View], test_start_ts: float) -> ReplayStats:
    """Replay one user's time-ordered ``stream``; decisions start at ``test_start_ts``."""
    stats = ReplayStats()
    first_test = next((i for i, v in enumerate(stream) if v.start_ts >= test_start_ts), len(stream))
    for view in stream[:first_test]:
        runtime.record(view)
    model_preload = [0] * len(stream)
    fixed_preload = [0] * len(stream)
    for i in range(first_test, len(stream)):
        upcoming = stream[i : i + LOOKAHEAD]
        candidates = [v.as_candidate() for v in upcoming]
        decision = runtime.predict(candidates, now=stream[i].start_ts)
        stats.decisions += 1
        stats.latencies_s.append(decision.latency_s)
        if decision.used_model:
            stats.model_decisions += 1
            assert decision.watch_s is not None
            stats.abs_errors.append(abs(decision.watch_s[0] - stream[i].watch_s))
        else:
            stats.fallback_reasons[decision.reason] = stats.fallback_reasons.get(decision.reason, 0) + 1
        for offset, item in enumerate(decision.plan.items):
            model_preload[i + offset] = max(model_preload[i + offset], item.bytes)
        for offset, item in enumerate(fixed_plan(candidates).items):
            fixed_preload[i + offset] = max(fixed_preload[i + offset], item.bytes)
        runtime.record(stream[i])
        runtime.observe(decision.prediction_id, stream[i].watch_s)
    for i in range(first_test, len(stream)):
        view = stream[i]
        byte_rate = view.size_bytes / view.duration_s
        watched = min(view.size_bytes, int(view.watch_s * byte_rate))
        needed = min(watched, int(STARTUP_S * byte_rate))
        stats.views += 1
        stats.model_bytes += model_preload[i]
        stats.fixed_bytes += fixed_preload[i]
        stats.model_wasted += max(0, model_preload[i] - watched)
        stats.fixed_wasted += max(0, fixed_preload[i] - watched)
        stats.model_covered += model_preload[i] >= needed
        stats.fixed_covered += fixed_preload[i] >= needed
    return stats
