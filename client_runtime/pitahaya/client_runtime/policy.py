"""The preload decision: how many upcoming videos to preload, how many bytes of each, and how far
ahead to buffer the video that is playing.

`fixed_plan` is the built-in default policy every device falls back to (the industry's
"3 videos x 800 KB"). The model policy turns predicted watch times into bytes: a video the
user will leave after 2 s needs 2 s of bytes (plus a safety margin), not 800 KB. A preload
only has to carry a video until the player's own buffering takes over, so it is capped
(``max_bytes``, by default the fixed policy's size) and floored at ``startup_s`` seconds of
the video's bitrate and ``min_bytes``, so every start is covered.

How many videos to keep preloaded follows the user's pace, as in Xigua's design: a user who
swipes every two seconds reaches the fifth video soon and needs it preloaded; one who watches
for a minute does not. The planner counts the upcoming videos the user is predicted to reach
within ``horizon_s`` seconds, between ``min_count`` and ``max_count`` (both default to
``count``, which keeps the count fixed). Because single predictions are noisy, the count and
each video's bytes are averaged over the last ``smoothing`` decisions (default 2: this one and
the previous one) before floors and caps apply, so a plan does not swing between swipes.

Buffer-ahead: a player buffers far ahead of the playing video by default, and every byte past
the moment the user swipes away is wasted. `PreloadPlan.buffer_ahead_s` caps it at the
predicted remaining watch time (times ``buffer_safety``, at most ``buffer_max_s``), under
guards that keep a wrong prediction from stalling playback. The runtime applies them, not the
host: the player asks `PreloadPlan.buffer_target_s` with its playhead and measured throughput
whenever it decides how far to buffer, and gets a number of seconds or None (its own default).

- a floor stays buffered ahead of the playhead whatever the cap: ``buffer_floor_s``, and
  ``buffer_floor_rate_s`` x bitrate / throughput (the seconds of content a dip of the link
  would eat: a few tenths of a second on a link ten times faster than the video, several on
  one barely faster). On KuaiRand x MMGC, perfect predictions through the planner reach 26%
  of the oracle's saving with a fixed 4 s floor and the 2x guard below, 80% with a floor of
  2 x bitrate / throughput and no guard (the watch_time scene's knobs, chosen for the model's
  noisier predictions, sit between: see its scene.toml);
- once the playhead passes the cap, the user has outlived the prediction: the next cap up holds
  when the plan has one (a cap at a quantile of the watch time is followed by one at each higher
  level: outliving the 20% quantile says the user is past the quick swipes, not that they will
  watch to the end), and past the last the player goes back to its own buffering for the rest
  of that video (someone still watching is likely to stay);
- optionally, the cap only holds while the throughput is at least ``buffer_min_throughput``
  times the video's bitrate (`PreloadPlan.min_throughput_bps`; 0: always).

None means "keep the player's default" (no prediction for that video, or already outlived).

A video whose length or size is unknown has no byte rate, so seconds cannot become bytes: it
is preloaded as the default policy would (``fixed_bytes``, at most ``max_bytes``), and while
it plays the player buffers as it likes. Its predicted watch time still counts for the pace.

Which prediction sizes what: a package whose model outputs quantiles of the watch time beside
its point prediction (`pitahaya.client_runtime.Manifest.quantiles`) may size its preloads and
the pace by one level (``preload_quantile``) and the playing video's buffer cap by another
(``buffer_quantile``, followed by every higher level as further caps); left out, the point
prediction sizes both. A low level preloads less for the many quick swipes and lets the floors
cover the rest; a knob naming a level the model does not output makes the package invalid
(`package_knobs`).

`PreloadPlanner` keeps the smoothing state (one per device); `model_plan` is the stateless
form (no smoothing), kept for callers that plan one decision at a time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pitahaya.client_runtime.errors import PackageFormatError
from pitahaya.client_runtime.events import Candidate

#: Most decisions a plan may be averaged over.
MAX_SMOOTHING = 32

#: The industry's fixed preload, every device's default policy: the next 3 videos, 800 KB each.
FIXED_COUNT, FIXED_BYTES = 3, 800_000

#: Knobs of the default policy and the floors/caps of the model policy.
DEFAULT_POLICY: dict[str, Any] = {
    "fixed_count": FIXED_COUNT,
    "fixed_bytes": FIXED_BYTES,
    "count": FIXED_COUNT,
    "min_bytes": 200_000,
    "max_bytes": FIXED_BYTES,
    "startup_s": 1.0,
    "safety": 1.25,
    "horizon_s": 30.0,
    "smoothing": 2,
    "buffer_safety": 1.0,
    "buffer_floor_s": 4.0,
    "buffer_floor_rate_s": 0.0,
    "buffer_max_s": 60.0,
    "buffer_min_throughput": 2.0,
}


@dataclass(frozen=True, slots=True)
class PreloadItem:
    """Preload the first ``bytes`` bytes of ``video_id``."""

    video_id: str
    bytes: int


@dataclass(frozen=True, slots=True)
class PreloadPlan:
    """The preload decision for the upcoming videos, in play order.

    Attributes:
        items: Videos to keep preloaded and the bytes of each.
        buffer_ahead_s: Buffer the playing video at most this many seconds past the current
            playhead (its predicted remaining watch time), or None for the player's default
            (no prediction for the playing video, the default policy, or already outlived).
        buffer_floor_s: Under the cap, still keep at least this much buffered ahead.
        min_throughput_bps: Apply the cap only while the measured throughput is at least this.
        buffer_floor_rate_s: ... and at least this many seconds x bitrate / throughput.
        bitrate_bps: The playing video's bitrate (for that floor and the throughput guard).
        buffer_then_s: Further caps, increasing, each above ``buffer_ahead_s``: once the playhead
            passes a cap the next one holds, and past the last the player's default. A cap at
            a low quantile of the watch time that the user outlives is evidence for the next
            level up, not for watching to the end.
    """

    items: tuple[PreloadItem, ...]
    buffer_ahead_s: float | None = None
    buffer_floor_s: float = 0.0
    min_throughput_bps: float = 0.0
    buffer_floor_rate_s: float = 0.0
    bitrate_bps: float = 0.0
    buffer_then_s: tuple[float, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    def buffer_target_s(self, played_s: float, throughput_bps: float) -> float | None:
        """How many seconds of the playing video to have buffered past the playhead now, or None.

        The player calls it whenever it decides how far to buffer (and caps the answer at its
        own maximum); None means its own default: no prediction, the user outlived it
        (``played_s`` past the cap and every further one), or the link is below
        ``min_throughput_bps``.

        Args:
            played_s: The playhead, in seconds of content from the start of the video.
            throughput_bps: The player's measured throughput (0, negative or NaN: a dead link,
                so a meter that broke never lowers the floor).
        """
        if not throughput_bps > 0.0:
            throughput_bps = 0.0
        cap = self.buffer_ahead_s
        if cap is not None and played_s >= cap:  # outlived: the next cap up, if any
            cap = next((then for then in self.buffer_then_s if played_s < then), None)
        if cap is None or throughput_bps < self.min_throughput_bps:
            return None
        floor = self.buffer_floor_s
        if self.buffer_floor_rate_s > 0.0:
            rate_floor = (
                self.buffer_floor_rate_s * self.bitrate_bps / throughput_bps if throughput_bps > 0.0 else math.inf
            )
            floor = max(floor, rate_floor)
        return max(floor, cap - played_s)


@dataclass(frozen=True, slots=True)
class PolicyKnobs:
    """A package's policy mapping, parsed once (not on every decision).

    Raises:
        ValueError: a knob is not a number or the floors exceed the caps.
    """

    min_count: int
    max_count: int
    horizon_s: float
    fixed_bytes: int
    min_bytes: int
    max_bytes: int
    startup_s: float
    safety: float
    smoothing: int
    buffer_safety: float
    buffer_floor_s: float
    buffer_floor_rate_s: float
    buffer_max_s: float
    buffer_min_throughput: float
    #: Model output column that sizes the preloads and the pace (0: the point prediction) ...
    preload_output: int = 0
    #: ... and the one that caps the playing video's buffer.
    buffer_output: int = 0

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any] | None, quantiles: Sequence[float] = ()) -> PolicyKnobs:
        """Parse a policy mapping for a model outputting its point prediction then ``quantiles``.

        Raises:
            ValueError: a knob is not a number, out of range, or names a level not in ``quantiles``.
        """
        knobs = {**DEFAULT_POLICY, **(policy or {})}
        count = int(knobs["count"])
        parsed = cls(
            min_count=int(knobs.get("min_count", count)),
            max_count=int(knobs.get("max_count", count)),
            horizon_s=float(knobs["horizon_s"]),
            fixed_bytes=int(knobs["fixed_bytes"]),
            min_bytes=int(knobs["min_bytes"]),
            max_bytes=int(knobs["max_bytes"]),
            startup_s=float(knobs["startup_s"]),
            safety=float(knobs["safety"]),
            smoothing=int(knobs["smoothing"]),
            buffer_safety=float(knobs["buffer_safety"]),
            buffer_floor_s=float(knobs["buffer_floor_s"]),
            buffer_floor_rate_s=float(knobs["buffer_floor_rate_s"]),
            buffer_max_s=float(knobs["buffer_max_s"]),
            buffer_min_throughput=float(knobs["buffer_min_throughput"]),
            preload_output=_output_of("preload_quantile", knobs.get("preload_quantile"), quantiles),
            buffer_output=_output_of("buffer_quantile", knobs.get("buffer_quantile"), quantiles),
        )
        if not 0 <= parsed.min_count <= parsed.max_count or not 1 <= parsed.smoothing <= MAX_SMOOTHING:
            # a package's knobs are its publisher's data: an unbounded smoothing window would
            # grow the host's memory and the cost of every decision without end
            raise ValueError(
                f"policy needs 0 <= min_count <= max_count and 1 <= smoothing <= {MAX_SMOOTHING}, got {dict(knobs)}"
            )
        if not (
            parsed.buffer_safety > 0
            and parsed.buffer_floor_s >= 0
            and 0 <= parsed.buffer_floor_rate_s < math.inf
            and parsed.buffer_min_throughput >= 0
        ):
            raise ValueError(
                "policy needs buffer_safety > 0, buffer_floor_s >= 0, a finite buffer_floor_rate_s >= 0 "
                f"and buffer_min_throughput >= 0, got {dict(knobs)}"
            )
        if parsed.min_bytes > parsed.max_bytes or parsed.buffer_floor_s > parsed.buffer_max_s:
            raise ValueError(f"policy floors exceed its caps: {dict(knobs)}")
        return parsed


def _output_of(knob: str, level: Any, quantiles: Sequence[float]) -> int:
    """The output column of quantile ``level`` (None: the point prediction, column 0)."""
    if level is None:
        return 0
    if type(level) not in (int, float) or float(level) not in quantiles:
        raise ValueError(f"{knob} {level!r} is not one of the model's quantile levels {list(quantiles)}")
    return 1 + list(quantiles).index(float(level))


def package_knobs(policy: Mapping[str, Any], quantiles: Sequence[float] = ()) -> PolicyKnobs:
    """The planner knobs of a package's ``manifest.policy`` (its model outputting ``quantiles``
    after the point), or the reason no device takes it.

    Raises:
        PackageFormatError: a knob is missing its type, out of range, too large for a float, or
            names a quantile level the model does not output.
    """
    try:
        return PolicyKnobs.from_policy(policy, quantiles)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise PackageFormatError(f"manifest.json policy is invalid: {e}") from e


def fixed_plan(candidates: Sequence[Candidate], policy: Mapping[str, Any] = DEFAULT_POLICY) -> PreloadPlan:
    """The default policy: the first ``fixed_bytes`` of the next ``fixed_count`` videos."""
    count = int(policy.get("fixed_count", DEFAULT_POLICY["fixed_count"]))
    size = int(policy.get("fixed_bytes", DEFAULT_POLICY["fixed_bytes"]))
    return PreloadPlan(tuple(PreloadItem(c.video_id, _at_most_file(size, c)) for c in candidates[:count]))


def _at_most_file(size: int, cand: Candidate) -> int:
    """``size`` bytes, or the whole file when it is smaller (when its size is known)."""
    return size if cand.size_bytes is None else min(size, cand.size_bytes)


def _byte_rate(cand: Candidate) -> float | None:
    """Bytes per second of the video, None when its length or size is unknown."""
    if cand.duration_s is None or cand.size_bytes is None:
        return None
    return cand.size_bytes / cand.duration_s


class PreloadPlanner:
    """The model policy with its smoothing state; one per device, not thread-safe on its own.

    Each decision first computes a raw count and raw bytes per video (predicted seconds x
    ``safety`` x the video's byte rate), then averages them with the previous decisions kept
    (``smoothing - 1`` of them), then applies the floors and caps. A video with no byte rate
    gets ``fixed_bytes`` (within ``max_bytes``), never averaged.
    """

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        self._recent: deque[tuple[int, dict[str, float]]] = deque()

    def reset(self) -> None:
        """Forget earlier decisions (after a fallback or a package swap)."""
        self._recent.clear()

    def plan(
        self,
        candidates: Sequence[Candidate],
        watch_s: Sequence[float],
        knobs: PolicyKnobs,
        *,
        playing: Candidate | None = None,
        playing_remaining_s: float | None = None,
        playing_then_s: Sequence[float] = (),
    ) -> PreloadPlan:
        """Plan one decision.

        Args:
            candidates: Upcoming videos in play order.
            watch_s: Predicted seconds watched, one per candidate.
            knobs: The package's policy.
            playing: The video playing now, if the host wants its buffer-ahead decided.
            playing_remaining_s: Its predicted remaining watch time, when known.
            playing_then_s: Its remaining watch time at higher quantile levels, increasing: the
                further caps once the user outlives the first (`PreloadPlan.buffer_then_s`).
        """
        safety = knobs.safety
        count, elapsed = 0, 0.0
        wanted: dict[str, float] = {}
        rates: list[float | None] = []  # each considered video's byte rate, once per decision
        for cand, seconds in zip(candidates[: knobs.max_count], watch_s, strict=False):
            seconds = seconds if seconds > 0.0 else 0.0
            rate = _byte_rate(cand)
            rates.append(rate)
            if rate is not None:
                wanted[cand.video_id] = seconds * safety * rate
            if count < knobs.min_count or elapsed < knobs.horizon_s:
                count += 1
                elapsed += seconds
        recent = self._recent
        if recent:
            count = min(math.ceil((count + sum(c for c, _ in recent)) / (len(recent) + 1)), len(rates))
        items = []
        for cand, rate in zip(candidates[:count], rates, strict=False):
            vid, size = cand.video_id, cand.size_bytes
            if size is None or rate is None:  # no byte rate: seconds cannot become bytes, preload as the default does
                items.append(PreloadItem(vid, _at_most_file(min(knobs.fixed_bytes, knobs.max_bytes), cand)))
                continue
            want = wanted[vid]
            earlier = [w[vid] for _, w in recent if vid in w]
            if earlier:
                want = (want + sum(earlier)) / (len(earlier) + 1)
            floor = max(knobs.min_bytes, knobs.startup_s * rate)
            items.append(PreloadItem(vid, int(min(size, knobs.max_bytes, max(floor, want)))))
        if knobs.smoothing > 1:
            recent.append((count, wanted))
            while len(recent) >= knobs.smoothing:
                recent.popleft()
        rate = None if playing is None else _byte_rate(playing)
        if rate is None or playing_remaining_s is None or playing_remaining_s <= 0.0:
            # nothing predicted for it, outlived, or no byte rate to guard the cap with: the player's default
            return PreloadPlan(tuple(items))
        cap = min(knobs.buffer_max_s, playing_remaining_s * knobs.buffer_safety)
        then: list[float] = []
        for remaining in playing_then_s:
            step = min(knobs.buffer_max_s, remaining * knobs.buffer_safety)
            if step > (then[-1] if then else cap):
                then.append(step)
        return PreloadPlan(
            tuple(items),
            cap,
            knobs.buffer_floor_s,
            knobs.buffer_min_throughput * 8.0 * rate,
            knobs.buffer_floor_rate_s,
            8.0 * rate,
            tuple(then),
        )


def model_plan(
    candidates: Sequence[Candidate],
    watch_s: Sequence[float],
    policy: Mapping[str, Any] = DEFAULT_POLICY,
    quantiles: Sequence[float] = (),
) -> PreloadPlan:
    """Preload what the user is predicted to watch, within a floor and a cap (one decision, no smoothing).

    Args:
        candidates: Upcoming videos in play order.
        watch_s: Predicted seconds watched, one per candidate (the model output the policy's
            ``preload_quantile`` names, if it names one).
        policy: ``count`` videos to keep preloaded (or between ``min_count`` and ``max_count``
            by pace); per video, the predicted bytes times ``safety``, at least ``startup_s``
            seconds of video and ``min_bytes``, at most ``max_bytes`` and the video's size.
        quantiles: The quantile levels the model outputs (a policy naming one parses only with them).
    """
    knobs = PolicyKnobs.from_policy({**policy, "smoothing": 1}, quantiles)
    return PreloadPlanner().plan(candidates, watch_s, knobs)
