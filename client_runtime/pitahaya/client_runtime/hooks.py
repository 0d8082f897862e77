"""Monitoring hooks: how the host app (and the built-in reporter) sees what the runtime does.

Subclass `Hooks` and override what you need; every method defaults to a no-op. The runtime
calls hooks through `call_hook`, which logs and swallows any exception a hook raises:
monitoring must never block or break a decision. `CompositeHooks` fans each callback out to
several hooks (the host's own and the built-in telemetry reporter), each guarded on its own;
`observes` tells whether a hook object overrides a callback, so the runtime skips building
events nobody listens to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from pitahaya.client_runtime.events import View

logger = logging.getLogger("pitahaya.client_runtime")

#: The callbacks of `Hooks`, in the order they are documented.
HOOK_NAMES = ("on_inference", "on_fallback", "on_view", "on_update", "on_outcome", "on_error")

#: What an update check did (`UpdateEvent.outcome`).
UpdateOutcome = Literal["installed", "unchanged", "rejected", "failed", "default_policy", "demoted"]

#: Reason code of a decision made by the model.
REASON_OK = "ok"
#: No package has been released to this device (yet).
REASON_NO_PACKAGE = "no_package"
#: The release's kill switch sends every device to the default policy.
REASON_KILL_SWITCH = "kill_switch"
#: Computing features or running the model raised.
REASON_INFERENCE_ERROR = "inference_error"
#: Too many recent failures: the model is skipped until the breaker half-opens.
REASON_CIRCUIT_OPEN = "circuit_open"
#: The registry served a release document older than one this device already obeyed.
REASON_RELEASE_ROLLBACK = "release_rollback"
#: The caller passed candidates no package can decide on (zero duration, negative size, ...).
REASON_INVALID_INPUT = "invalid_input"
#: An internal error was contained (a bug in the runtime or a dependency).
REASON_INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class InferenceEvent:
    """One `Runtime.predict` call.

    Attributes:
        prediction_id: Id to pass to `Runtime.observe` once the real watch time is known.
        scene: Scene name.
        package_version: Version that answered, or None when the default policy did.
        n_candidates: Number of candidates decided on.
        latency_s: Wall time of the whole decision (features, inference, planning).
        success: True when the intended package answered (``reason == "ok"``); False when a
            fallback did (the last-known-good package or the default policy).
        reason: `REASON_OK` or the fallback's reason code.
        active_version: The installed package the decision was asked of, whoever answered
            (None: none was active). Monitoring counts a decision, fallbacks included, against
            this version: a package that fails and leaves its decisions to the last-known-good
            one must show its failures, not lend them to the version that covered for it.
    """

    prediction_id: int
    scene: str
    package_version: str | None
    n_candidates: int
    latency_s: float
    success: bool
    reason: str
    active_version: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    """The outcome of one update check.

    Attributes:
        scene: Scene name.
        outcome: ``installed``, ``unchanged``, ``rejected`` (a bad package or an older release
            document), ``failed`` (could not reach or verify the registry), ``default_policy``
            (kill switch / no release) or ``demoted`` (the active package kept failing and the
            last-known-good one took over).
        version: Package version concerned, when known.
        reason: Reason code (`REASON_OK` or an error's ``reason``).
        detail: Human-readable detail.
    """

    scene: str
    outcome: UpdateOutcome
    version: str | None
    reason: str
    detail: str = ""


class Hooks:
    """Monitoring callbacks; override any subset. All default to no-ops."""

    def on_inference(self, event: InferenceEvent) -> None:
        """After every decision, model or fallback."""

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        """When a decision did not come from the intended package (last-known-good or default
        policy answered), with the reason code and the error if any."""

    def on_view(self, view: View) -> None:
        """When `Runtime.record` received a finished view (PV)."""

    def on_update(self, event: UpdateEvent) -> None:
        """After every update check."""

    def on_outcome(self, prediction_id: int, predicted_s: float, actual_s: float) -> None:
        """When `Runtime.observe` joins a real watch time to an earlier prediction."""

    def on_error(self, where: str, error: BaseException) -> None:
        """When an internal error was contained (the host app is never affected)."""


def call_hook(hooks: Hooks, name: str, *args: Any) -> None:
    """Call ``hooks.<name>(*args)``; log and swallow anything it raises."""
    try:
        getattr(hooks, name)(*args)
    except Exception:  # a broken hook must never break a decision
        logger.exception("monitoring hook %s raised; ignored", name)


def observes(hooks: Hooks, name: str) -> bool:
    """Whether ``hooks`` does anything on callback ``name`` (overrides it, or fans it out to one that does)."""
    if isinstance(hooks, CompositeHooks):
        return bool(hooks._targets[name])
    return getattr(type(hooks), name) is not getattr(Hooks, name)


class CompositeHooks(Hooks):
    """Calls several hooks in order; one that raises is logged and skipped, the others still run.

    Each callback goes only to the hooks that override it, so composing costs one loop over
    the listeners and nothing for callbacks nobody overrides.
    """

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = tuple(hooks)
        self._targets = {name: tuple(h for h in self.hooks if observes(h, name)) for name in HOOK_NAMES}

    def _fan_out(self, name: str, *args: Any) -> None:
        for hook in self._targets[name]:
            call_hook(hook, name, *args)

    def on_inference(self, event: InferenceEvent) -> None:
        self._fan_out("on_inference", event)

    def on_fallback(self, reason: str, error: BaseException | None) -> None:
        self._fan_out("on_fallback", reason, error)

    def on_view(self, view: View) -> None:
        self._fan_out("on_view", view)

    def on_update(self, event: UpdateEvent) -> None:
        self._fan_out("on_update", event)

    def on_outcome(self, prediction_id: int, predicted_s: float, actual_s: float) -> None:
        self._fan_out("on_outcome", prediction_id, predicted_s, actual_s)

    def on_error(self, where: str, error: BaseException) -> None:
        self._fan_out("on_error", where, error)
