"""Who decides what to preload: the fixed industry default, the model on a real runtime, an oracle.

Each policy answers `PlayDecision` when a video becomes current: bytes to preload for the next
videos, and how far to buffer the playing one. The knobs that trade bytes for slow starts:

- ``margin`` (aggressiveness): predicted watch times (model) or true ones (oracle) are
  multiplied by it before they become bytes; below 1 saves more and risks more slow starts.
- floors: a preload never drops below ``startup_s`` seconds of the video (every start stays
  covered when the preload finished); the model's package sets the playing video's buffer
  guards (a floor, back to the full buffer once the prediction is outlived, and a minimum
  throughput for the cap to hold).

`ModelPolicy` runs the real `pitahaya.client_runtime.Runtime` for every user (one device per
user): views are recorded as they finish, outcomes observed, and the runtime's own plan is used.
`PlannedOraclePolicy` feeds the true watch times through the device's planner instead: how much
of the oracle's saving the plan's shape lets through even with perfect predictions.
`host_steps` is that host app's loop, one played view at a time, for other drivers (the fleet
simulator paces it on a clock).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pitahaya.client_runtime import (
    FIXED_BYTES,
    FIXED_COUNT,
    Decision,
    Isolation,
    LocalArchiveUpdater,
    PackageUpdater,
    PolicyKnobs,
    PreloadPlan,
    PreloadPlanner,
    Runtime,
    View,
)
from pitahaya.simulation.playback import PlayDecision
from pitahaya.simulation.sessions import Session, played


def _startup_bytes(v: View, startup_s: float) -> int:
    duration, size = played(v)
    return min(size, math.ceil(startup_s * size / duration))


class FixedPolicy:
    """Preload ``count`` x ``size_bytes``; buffer the playing video the player's full buffer-ahead.

    The defaults are every device's default policy (`pitahaya.client_runtime.FIXED_COUNT` x
    `FIXED_BYTES`: the industry's 3 x 800 KB), the baseline every other policy is compared to.
    """

    def __init__(self, count: int = FIXED_COUNT, size_bytes: int = FIXED_BYTES) -> None:
        self.name = "fixed"
        self.count, self.size_bytes = count, size_bytes

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        pass

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        return PlayDecision(preload_bytes=(self.size_bytes,) * self.count)

    def end(self, lane: int, session: int) -> None:
        pass


class OraclePolicy:
    """Knows every watch time: preloads what will be watched (within the fixed cap) and buffers no further.

    Args:
        margin: Aggressiveness knob (1.0 = exactly the true watch time).
        count: Next videos to preload.
        max_bytes: Cap per preload (the fixed size: past it the player's buffering takes over).
        startup_s: Preload floor in seconds of video (the player's start-up threshold).
    """

    def __init__(
        self,
        margin: float = 1.0,
        *,
        count: int = FIXED_COUNT,
        max_bytes: int = FIXED_BYTES,
        startup_s: float = 1.0,
    ) -> None:
        self.name = "oracle" if margin == 1.0 else f"oracle x{margin:g}"
        self.margin, self.count, self.max_bytes, self.startup_s = (
            margin,
            count,
            max_bytes,
            startup_s,
        )
        self._lanes: Sequence[Sequence[Session]] = ()

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        self._lanes = lanes

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        views = self._lanes[lane][session].views
        preload = []
        for v in views[index + 1 : index + 1 + self.count]:
            duration, size = played(v)
            watched = min(v.watch_s, duration) * self.margin * size / duration
            floor = _startup_bytes(v, self.startup_s)
            preload.append(min(size, self.max_bytes, max(floor, math.ceil(watched))))
        return PlayDecision(tuple(preload), watch_limit_s=views[index].watch_s * self.margin)

    def end(self, lane: int, session: int) -> None:
        pass


class PlannedOraclePolicy:
    """The true watch times through the device's planner (`PreloadPlanner`, one per lane, with its smoothing).

    The oracle policy knows every watch time *and* chooses its own plan; this one knows every
    watch time but must plan as a device does (the package's knobs: count, floors, caps,
    safety margin, buffer guards). The gap between the two is what the plan's shape costs.

    Args:
        knobs: The planner's knobs (a package's ``manifest.policy``, parsed; default: the runtime's).
        margin: Aggressiveness knob applied to the plan's bytes and buffer cap, as for the model.
        lookahead: Upcoming videos planned for.
        startup_s: Preload floor in seconds of video.
    """

    def __init__(
        self,
        knobs: PolicyKnobs | None = None,
        margin: float = 1.0,
        *,
        lookahead: int = FIXED_COUNT,
        startup_s: float = 1.0,
    ) -> None:
        self.name = "oracle plan" if margin == 1.0 else f"oracle plan x{margin:g}"
        self.knobs = knobs or PolicyKnobs.from_policy(None)
        self.margin, self.lookahead, self.startup_s = margin, lookahead, startup_s
        self._lanes: Sequence[Sequence[Session]] = ()
        self._planners: list[PreloadPlanner] = []

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        self._lanes = lanes
        self._planners = [PreloadPlanner() for _ in lanes]

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        views = self._lanes[lane][session].views
        upcoming = views[index + 1 : index + 1 + self.lookahead]
        plan = self._planners[lane].plan(
            [v.as_candidate() for v in upcoming],
            [v.watch_s for v in upcoming],
            self.knobs,
            playing=views[index].as_candidate(),
            playing_remaining_s=views[index].watch_s,
        )
        return play_decision(plan, views, index, self.margin, self.startup_s, self.lookahead)

    def end(self, lane: int, session: int) -> None:
        pass


def play_decision(
    plan: PreloadPlan, views: Sequence[View], index: int, margin: float, startup_s: float, lookahead: int
) -> PlayDecision:
    """What the player does with a device's plan made as ``views[index]`` became current.

    Preloads follow the plan in play order up to the first video it leaves out, each scaled by
    ``margin`` and floored at ``startup_s`` seconds of the video; the playing video's buffer is
    capped at the plan's ``buffer_ahead_s`` (and, once outlived, each of its ``buffer_then_s``;
    all times ``margin``) under its guards, or left to the player when the plan says nothing.
    """
    planned = {item.video_id: item.bytes for item in plan.items}
    preload = []
    for v in views[index + 1 : index + 1 + lookahead]:
        if v.video_id not in planned:
            break
        floor = _startup_bytes(v, startup_s)
        preload.append(min(played(v)[1], max(floor, round(planned[v.video_id] * margin))))
    if plan.buffer_ahead_s is None:  # no prediction for the playing video: the player's default
        return PlayDecision(tuple(preload))
    return PlayDecision(
        tuple(preload),
        watch_limit_s=plan.buffer_ahead_s * margin,
        buffer_floor_s=plan.buffer_floor_s,
        min_throughput_bps=plan.min_throughput_bps,
        floor_rate_s=plan.buffer_floor_rate_s,
        watch_then_s=tuple(then * margin for then in plan.buffer_then_s),
    )


@dataclass(frozen=True, slots=True)
class HostStep:
    """One view played by a host app, with the two decisions around it.

    Attributes:
        session: The sitting being played.
        index: Position of ``playing`` in ``session.views``.
        playing: The view that just became current (it has been recorded and observed).
        earlier: The decision whose first candidate was ``playing`` (its prediction was observed).
        decision: The decision made as ``playing`` became current: it plans the next videos.
    """

    session: Session
    index: int
    playing: View
    earlier: Decision
    decision: Decision

    @property
    def last_in_session(self) -> bool:
        return self.index == len(self.session.views) - 1


def host_steps(runtime: Runtime, sessions: Sequence[Session], *, lookahead: int = FIXED_COUNT) -> Iterator[HostStep]:
    """Play one user's sessions through their device's runtime as a host app does, one view per step.

    Sessions go in time order. Before each one, the history the device has not seen yet is
    recorded; when it starts the feed asks for its first videos; then, each time a video becomes
    current, the host asks for the next ``lookahead`` videos with the playing one passed as
    ``playing``, records the playing view and observes its real watch time against the decision
    that predicted it. Each step is yielded after that, so a caller can pace the steps.
    """
    recorded_until = -math.inf
    for sess in sorted(sessions, key=lambda s: s.views[0].start_ts):
        for view in sess.history:  # views of the user the device has not seen yet
            if view.start_ts > recorded_until:
                runtime.record(view)
                recorded_until = view.start_ts
        views = sess.views
        # The feed loads: the first videos are predicted before anything plays.
        earlier = runtime.predict([v.as_candidate() for v in views[: 1 + lookahead]], now=views[0].start_ts)
        for i, playing in enumerate(views):
            decision = runtime.predict(
                [v.as_candidate() for v in views[i + 1 : i + 1 + lookahead]],
                now=playing.start_ts,
                playing=playing.as_candidate(),
            )
            runtime.record(playing)
            runtime.observe(earlier.prediction_id, playing.watch_s)
            yield HostStep(sess, i, playing, earlier, decision)
            earlier = decision  # its first candidate is the next video to play
        recorded_until = max(recorded_until, views[-1].start_ts)


@dataclass
class RuntimeStats:
    """What the model policy's runtimes did."""

    decisions: int = 0
    model_decisions: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    abs_error_sum_s: float = 0.0
    latency_sum_s: float = 0.0


class ModelPolicy:
    """The model, through a real `Runtime` per device, used the way a host app uses it.

    When a session starts the feed asks for its first videos; then, each time a video becomes
    current, the host asks for the next ``lookahead`` videos with the playing one passed as
    ``playing``: the runtime plans their preloads and caps the playing video's buffer at its
    predicted remaining watch time (the prediction made when it was upcoming), with the
    package's guards (`pitahaya.client_runtime.PreloadPlan`). The player here applies that
    plan; ``margin`` scales the preload bytes and the buffer cap.

    The runtime's decisions depend on the views a device has seen, never on playback, so each
    session is predicted once (views recorded as they finish, outcomes observed) and the
    decisions are shared by every network lane and every ``margin`` (`with_margin`).

    Args:
        runtime_for: Builds the (refreshed) runtime of a device id; see `local_runtime_factory`.
        margin: Aggressiveness knob applied to the runtime's bytes and buffer cap.
        lookahead: Upcoming videos sent to ``predict``.
        startup_s: Preload floor in seconds of video.
    """

    def __init__(
        self,
        runtime_for: Callable[[str], Runtime],
        margin: float = 1.0,
        *,
        lookahead: int = FIXED_COUNT,
        startup_s: float = 1.0,
    ) -> None:
        self.name = "model" if margin == 1.0 else f"model x{margin:g}"
        self.runtime_for = runtime_for
        self.margin, self.lookahead, self.startup_s = margin, lookahead, startup_s
        self.stats = RuntimeStats()
        self._decisions: dict[int, list[Decision]] = {}
        self._lanes: Sequence[Sequence[Session]] = ()

    def with_margin(self, margin: float) -> ModelPolicy:
        """The same runtimes' decisions under another aggressiveness."""
        other = ModelPolicy(self.runtime_for, margin, lookahead=self.lookahead, startup_s=self.startup_s)
        other.stats, other._decisions = self.stats, self._decisions
        return other

    def predict(self, sessions: Sequence[Session]) -> None:
        """Run every not yet predicted session through its user's runtime, users' sessions in time order."""
        by_user: dict[str, list[Session]] = {}
        for sess in sessions:
            if id(sess) not in self._decisions:
                by_user.setdefault(sess.user_id, []).append(sess)
        for user, user_sessions in by_user.items():
            runtime = self.runtime_for(f"sim-{user}")
            try:
                self._predict_user(runtime, user_sessions)
            finally:
                runtime.close()  # its worker (process isolation) is not needed past this user

    def _predict_user(self, runtime: Runtime, user_sessions: Sequence[Session]) -> None:
        """Play one user's sessions through their device's runtime, in time order."""
        for step in host_steps(runtime, user_sessions, lookahead=self.lookahead):
            self._count(step.earlier, step.playing.watch_s)
            self._decisions.setdefault(id(step.session), []).append(step.decision)

    def _count(self, decision: Decision, actual_s: float) -> None:
        """Account the decision that predicted the video now played (its first candidate)."""
        self.stats.decisions += 1
        self.stats.latency_sum_s += decision.latency_s
        if decision.watch_s is None:
            self.stats.fallback_reasons[decision.reason] = self.stats.fallback_reasons.get(decision.reason, 0) + 1
        else:
            self.stats.model_decisions += 1
            self.stats.abs_error_sum_s += abs(decision.watch_s[0] - actual_s)

    def begin(self, lanes: Sequence[Sequence[Session]]) -> None:
        self._lanes = lanes
        self.predict([s for lane in lanes for s in lane])

    def decide(self, lane: int, session: int, index: int) -> PlayDecision:
        sess = self._lanes[lane][session]
        plan = self._decisions[id(sess)][index].plan
        return play_decision(plan, sess.views, index, self.margin, self.startup_s, self.lookahead)

    def end(self, lane: int, session: int) -> None:
        pass


def local_runtime_factory(
    archive: str | Path, cache_root: str | Path, scene: str = "watch_time", *, isolation: Isolation = "inline"
) -> Callable[[str], Runtime]:
    """Runtimes that install ``archive`` through the update seam (a package file, or one pulled from a registry).

    The archive is still fully loaded by the runtime: manifest and file hashes, feature code,
    ONNX model, self-test. Only the TUF transport is skipped, so use an archive that came
    through `pull_package` or that you built yourself. ``isolation`` defaults to ``inline``:
    the simulator evaluates a package offline, one runtime per user, and containment changes
    no decision (a test pins it), only what a device pays per call.
    """
    archive, cache_root = Path(archive), Path(cache_root)
    updater = LocalArchiveUpdater(archive, scene)

    def make(device_id: str) -> Runtime:
        runtime = Runtime(
            None, scene, device_id, cache_dir=cache_root / device_id, updater=updater, isolation=isolation
        )
        runtime.refresh()
        return runtime

    return make


def pull_package(
    registry_url: str,
    trusted_root: bytes,
    cache_dir: str | Path,
    *,
    scene: str = "watch_time",
    channel: str = "stable",
) -> Path:
    """Pull the released package from a registry through TUF, as a device does; returns the verified archive.

    Raises:
        pitahaya.client_runtime.UpdateError: the registry is unreachable or a file fails verification.
        LookupError: the release names no package (kill switch or no release for this device).
    """
    check = PackageUpdater(
        registry_url,
        scene,
        "pitahaya-simulator",
        cache_dir,
        trusted_root=trusted_root,
        channel=channel,
    ).check()
    if check.archive_path is None:
        raise LookupError(f"the {channel} release of {scene} names no package")
    return check.archive_path
