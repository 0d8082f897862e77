"""One decision: which package answers, the fallback chain, the circuit breaker, and the plan.

Fallback chain of one decision: the active package; if it raised, the last-known-good package
in the same call (within what is left of the deadline); else the built-in default policy.
Every decision carries a reason code (``ok`` or why it fell back), also sent to the hooks.

A failed call counts against its package: ``breaker_failures`` failures among its last
``breaker_window`` calls take the active package out of service (marked bad, last-known-good
takes over) or, with no last-known-good, open the circuit: the default policy answers for
``breaker_reset_s``, then one trial call decides (half-open). Candidates no package can decide
on are the caller's fault and never count.

`Decider` is the runtime's hot path: it keeps what it reads on every call in its own slots and
builds no event nobody listens to.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pitahaya.client_runtime.config import RuntimeConfig
from pitahaya.client_runtime.containment import RequestTooLarge
from pitahaya.client_runtime.errors import CallError, InferenceError
from pitahaya.client_runtime.events import Candidate
from pitahaya.client_runtime.hooks import (
    REASON_CIRCUIT_OPEN,
    REASON_INTERNAL_ERROR,
    REASON_INVALID_INPUT,
    REASON_OK,
    Hooks,
    InferenceEvent,
    UpdateEvent,
    call_hook,
    observes,
)
from pitahaya.client_runtime.installed import InstalledPackages, Slot
from pitahaya.client_runtime.item_stats import ItemStats
from pitahaya.client_runtime.policy import PreloadPlan, PreloadPlanner, fixed_plan
from pitahaya.client_runtime.state import Mode

#: Recent predictions kept per video id, to size the buffer-ahead of the video playing.
_RECENT_PREDICTIONS = 64
#: Longest watch time a package may predict (a day); larger values are clamped, negative ones to 0.
MAX_WATCH_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one `Runtime.predict` call.

    Attributes:
        prediction_id: Pass it to `Runtime.observe` with the real watch time.
        watch_s: Predicted seconds watched per candidate, or None under the default policy.
        plan: What to preload, and how far to buffer the playing video.
        package_version: Package that answered, or None for the default policy.
        reason: ``ok`` when the intended package answered, else the fallback's reason code.
        latency_s: Wall time of the decision.
        watch_quantiles: Per candidate, its predicted watch seconds at each of
            ``quantile_levels`` (increasing), when the answering package's model predicts a
            distribution; else None.
        quantile_levels: The levels of ``watch_quantiles`` (e.g. ``(0.2, 0.8)``).
    """

    prediction_id: int
    watch_s: tuple[float, ...] | None
    plan: PreloadPlan
    package_version: str | None
    reason: str
    latency_s: float
    watch_quantiles: tuple[tuple[float, ...], ...] | None = None
    quantile_levels: tuple[float, ...] = ()

    @property
    def used_model(self) -> bool:
        return self.watch_s is not None


def _split(out: tuple[float, ...], outputs: int) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """The point predictions and each candidate's quantiles, of a model's outputs row after row.

    The quantiles are sorted: heads fit one level at a time may cross, and sorting them is the
    rearrangement that never moves a quantile further from the true one.
    """
    return out[0::outputs], tuple(tuple(sorted(out[i + 1 : i + outputs])) for i in range(0, len(out), outputs))


def _column(watch: tuple[float, ...], quantiles: tuple[tuple[float, ...], ...], output: int) -> tuple[float, ...]:
    """Output column ``output`` per candidate: 0 the point prediction, ``1 + i`` the i-th quantile."""
    return watch if output == 0 else tuple(q[output - 1] for q in quantiles)


def _buffer_caps(watch_s: float, quantiles: tuple[float, ...], output: int) -> tuple[float, ...]:
    """The watch times that cap a candidate's buffer once it plays: its output ``output`` (0 the
    point prediction), then, for a quantile, each higher level's (`PreloadPlan.buffer_then_s`)."""
    return (watch_s,) if output == 0 else quantiles[output - 1 :]


def _reason_of(error: BaseException) -> str:
    """The reason code of a failed call: the package's (timeout, lost worker, error) or ours."""
    return error.reason if isinstance(error, CallError) else REASON_INTERNAL_ERROR


def _valid_candidates(candidates: Sequence[Candidate]) -> bool:
    """Whether every candidate's duration and size are unknown or positive finite and its fields well-typed.

    Checked only after a failure.
    """
    try:
        return all(
            (c.duration_s is None or 0.0 < c.duration_s < math.inf)
            and (c.size_bytes is None or 0 < c.size_bytes < math.inf)
            and isinstance(c.video_id, str)
            and (c.item is None or isinstance(c.item, ItemStats))
            for c in candidates
        )
    except (AttributeError, TypeError):
        return False


class Decider:
    """Answers decisions from the installed packages, and joins their outcomes.

    Args:
        scene: Scene name (for the events sent to the hooks).
        packages: The device's packages; their state is read and changed under ``lock``.
        planner: The plan's smoothing state (reset by ``packages`` on every swap).
        hooks: Monitoring; callbacks it does not override cost nothing here.
        config: Breaker thresholds and how many predictions wait for their outcome.
        clock: Monotonic clock in seconds (the circuit's wait).
        lock: The runtime's lock; a decision holds it from the choice of package to the plan.

    Attributes:
        config: ``config`` (`Runtime.config` replaces it when assigned).
    """

    __slots__ = (
        "_clock",
        "_hooks",
        "_lock",
        "_next_id",
        "_observe_fallback",
        "_observe_inference",
        "_packages",
        "_pending",
        "_planner",
        "_recent_watch",
        "_state",
        "config",
        "scene",
    )

    def __init__(
        self,
        scene: str,
        packages: InstalledPackages,
        planner: PreloadPlanner,
        *,
        hooks: Hooks,
        config: RuntimeConfig,
        clock: Callable[[], float],
        lock: threading.RLock,
    ) -> None:
        self.scene = scene
        self._packages = packages
        self._state = packages.state
        self._planner = planner
        self._hooks = hooks
        # Skip building events nobody listens to: the hot path pays only for what is observed.
        self._observe_inference = observes(hooks, "on_inference")
        self._observe_fallback = observes(hooks, "on_fallback")
        self.config = config
        self._clock = clock
        self._lock = lock
        self._next_id = 0
        self._pending: dict[int, float] = {}
        self._recent_watch: dict[str, tuple[float, ...]] = {}

    def decide(
        self, candidates: Sequence[Candidate], now: float, playing: Candidate | None, played_s: float, started: float
    ) -> Decision:
        """Decide for ``candidates`` (see `Runtime.predict`); ``started`` is the call's `time.perf_counter`.

        Raises:
            Exception: only a bug here or in a dependency; package failures become fallbacks.
        """
        error: BaseException | None = None
        out: tuple[float, ...] | None = None
        watch: tuple[float, ...] | None = None
        quantiles: tuple[tuple[float, ...], ...] | None = None
        levels: tuple[float, ...] = ()
        with self._lock:
            self._next_id += 1
            prediction_id = self._next_id
            slot, reason = self._answering()
            active = slot.version if slot is not None else None
            if slot is not None:
                deadline = time.monotonic() + slot.contained.limits.call_timeout_s
                try:
                    out = self._infer(slot, candidates, now, deadline)
                    if self._state.mode is Mode.HALF_OPEN:
                        self._state.close_circuit()
                    slot.outcome(False)
                except Exception as e:
                    error = e
                    reason = _reason_of(e)
                    if isinstance(e, RequestTooLarge) or not _valid_candidates(candidates):
                        # the caller's fault: not held against the package
                        slot, reason = None, REASON_INVALID_INPUT
                    else:
                        failed, slot = slot, self._state.last_good  # next in the chain, taken before any demotion
                        self._call_failed(failed, e)
                        if time.monotonic() >= deadline:
                            slot = None  # no time left for another package: the default policy answers
                    if slot is not None:
                        try:
                            out = self._infer(slot, candidates, now, deadline)
                        except Exception as e2:
                            self._call_failed(slot, e2)
                            slot = None
            if out is None:
                self._planner.reset()
                plan = fixed_plan(candidates)
                version = None
            else:
                assert slot is not None
                version = slot.version
                knobs = slot.contained.knobs
                levels = slot.contained.quantiles
                if levels:
                    watch, quantiles = _split(out, 1 + len(levels))
                    preload_s = _column(watch, quantiles, knobs.preload_output)
                    first_caps = _buffer_caps(watch[0], quantiles[0], knobs.buffer_output) if watch else ()
                else:
                    watch = preload_s = out
                    first_caps = out[:1]
                remaining: float | None = None
                then: tuple[float, ...] = ()
                if playing is not None:
                    predicted = self._recent_watch.get(playing.video_id)
                    if predicted is not None:  # its caps as predicted when it was upcoming, less what was played
                        remaining = predicted[0] - played_s
                        if len(predicted) > 1:
                            then = tuple(p - played_s for p in predicted[1:])
                plan = self._planner.plan(
                    candidates, preload_s, knobs, playing=playing, playing_remaining_s=remaining, playing_then_s=then
                )
                if watch:
                    self._remember(prediction_id, candidates[0].video_id, watch[0], first_caps)
        latency = time.perf_counter() - started
        decision = Decision(prediction_id, watch, plan, version, reason, latency, quantiles, levels)
        if reason != REASON_OK and self._observe_fallback:
            call_hook(self._hooks, "on_fallback", reason, error)
        if self._observe_inference:
            event = InferenceEvent(
                prediction_id, self.scene, version, len(candidates), latency, reason == REASON_OK, reason, active
            )
            call_hook(self._hooks, "on_inference", event)
        return decision

    def take_prediction(self, prediction_id: int) -> float | None:
        """The first candidate's predicted watch time of an earlier decision, once (None: unknown or dropped)."""
        with self._lock:
            return self._pending.pop(prediction_id, None)

    def _answering(self) -> tuple[Slot | None, str]:
        """The package that should answer now and the reason code if none (lock held)."""
        state = self._state
        if state.mode is Mode.DEFAULT:
            return None, state.reason
        if state.mode is Mode.CIRCUIT_OPEN:
            if self._clock() < state.open_until:
                return None, REASON_CIRCUIT_OPEN
            state.half_open()  # this call is the trial
        return state.active, REASON_OK

    def _infer(self, slot: Slot, candidates: Sequence[Candidate], now: float, deadline: float) -> tuple[float, ...]:
        """The model outputs of ``slot`` (watch seconds, row after row), clamped to [0, MAX_WATCH_S] (lock held)."""
        if not candidates:
            return ()
        out = slot.contained.predict(candidates, now, deadline)
        if not math.isfinite(sum(out)):
            raise InferenceError(f"package {slot.version} predicted a non-finite watch time")
        if min(out) < 0.0 or max(out) > MAX_WATCH_S:
            return tuple(min(max(x, 0.0), MAX_WATCH_S) for x in out)
        return out

    def _remember(self, prediction_id: int, video_id: str, watch_s: float, buffer_s: tuple[float, ...]) -> None:
        """Keep the first candidate's prediction for `take_prediction`, and the predictions that
        cap its buffer-ahead once it plays (lock held)."""
        pending = self._pending
        pending[prediction_id] = watch_s
        if len(pending) > self.config.pending_outcomes:
            del pending[next(iter(pending))]
        recent = self._recent_watch
        recent[video_id] = buffer_s
        if len(recent) > _RECENT_PREDICTIONS:
            del recent[next(iter(recent))]

    def _call_failed(self, slot: Slot, error: BaseException) -> None:
        """Count a failed call of ``slot``; past the threshold take it out of service (lock held)."""
        call_hook(self._hooks, "on_error", "inference", error)
        reason = _reason_of(error)
        state, config = self._state, self.config
        slot.outcome(True)
        if slot is state.active and state.mode is Mode.HALF_OPEN:  # the trial failed: open again
            state.open_circuit(self._clock() + config.breaker_reset_s)
            return
        if slot.failures < config.breaker_failures:
            return
        if slot is state.active:
            if state.last_good is not None and state.last_good.failures < config.breaker_failures:
                self._packages.demote(reason)
                assert state.active is not None
                event = UpdateEvent(self.scene, "demoted", state.active.version, reason, repr(error))
                call_hook(self._hooks, "on_update", event)
            else:
                slot.forget_failures()
                state.open_circuit(self._clock() + config.breaker_reset_s)
        elif slot is state.last_good:
            self._packages.drop_last_good()
