"""Quality-gated rollouts: open a gate with its release, evaluate it, apply its steps.

Workflow: a release with a `GateSpec` is published at the spec's first step, and `open_gate`
runs in its transaction (`releases.create_release(before_commit=...)`): it records the
baseline (the versions the other devices run: the rollouts underneath and
``previous_version``); the evidence counts both arms' telemetry from that minute on. The app's
background task calls `evaluate_gates` every ``gate_interval_seconds``; for
each observing gate, under the publish lock (so several workers or replicas step it once):

1. follow the channel: a newer create, rollback or revert supersedes the gate; an operator's
   widen, pause, resume or kill switch is adopted (a paused or killed rollout waits);
2. judge the new version against its baseline from the telemetry since the rollout began
   (`pitahaya.registry.gate.evidence`);
3. act: ``worse`` pauses or reverts the release; ``pass`` after ``min_step_seconds`` at the
   step widens it to the next step, or completes the gate after the last one.

Every automatic step is a new signed release (actor ``gate``) plus an audit entry
``gate_<action>`` carrying its evidence, committed together; the evidence of the latest
evaluation is kept on the gate for `rollout_status`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.clock import Clock, utcnow
from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.gate.evidence import ArmTotals, DeviceTally, Judgement, judge
from pitahaya.registry.gate.spec import GateSpec
from pitahaya.registry.models import (
    GateState,
    ReleaseOperation,
    ReleaseRow,
    RolloutGate,
    TelemetryCounter,
    TelemetryDevice,
)
from pitahaya.registry.services import releases
from pitahaya.registry.services.audit import log_action
from pitahaya.registry.services.publication import PublicationStore, publishing
from pitahaya.registry.services.telemetry import DEVICE_TALLIES
from pitahaya.registry.tuf import TufRepository

logger = logging.getLogger(__name__)

GATE_ACTOR = "gate"
OBSERVING: GateState = "observing"
#: What an evaluation does to a gate: widen to its next step, stop it (pause or roll back), or close it.
GateAction = Literal["advance", "pause", "rollback", "complete"]
#: The state each action but ``advance`` leaves a gate in.
_STOPPED: dict[GateAction, GateState] = {"pause": "paused", "rollback": "rolled_back", "complete": "complete"}
#: Release operations that keep a gated rollout (an operator adjusting it); any other replaces it.
_ADJUSTMENTS: frozenset[ReleaseOperation] = frozenset({"widen", "pause", "resume", "kill", "unkill"})


def open_gate(*, session: Session, release: ReleaseRow, spec: GateSpec, clock: Clock = utcnow) -> RolloutGate:
    """Start gating ``release`` (flushed, not committed: the caller commits both together).

    Any gate still observing on the channel is superseded by this one.
    """
    for older in _observing(session, scene=release.scene, channel=release.channel):
        older.state = "superseded"
    baseline = releases.versions_underneath(release)
    now = clock()
    gate = RolloutGate(
        scene=release.scene,
        channel=release.channel,
        release_id=release.id,
        package_version=release.package_version,
        baseline_versions=baseline,
        spec=spec.model_dump(mode="json"),
        state=OBSERVING,
        step=0,
        step_inferences=0.0,
        step_started_at=now,
        history=[],
        created_at=now,
        updated_at=now,
    )
    session.add(gate)
    return gate


def evaluate_gates(
    *,
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    tuf: TufRepository,
    clock: Clock = utcnow,
    on_release: Callable[[Session, ReleaseRow], None] = lambda _session, _row: None,
) -> list[dict[str, Any]]:
    """Evaluate every observing gate once; returns the automatic steps taken.

    A failure on one gate is logged and leaves it observing; the others still run.
    ``on_release(session, row)`` is told of every release a step published (the ops view).
    """
    with sessions() as session:
        gate_ids = list(session.scalars(select(RolloutGate.id).where(RolloutGate.state == OBSERVING)))
    steps = []
    for gate_id in gate_ids:
        try:
            with sessions() as session:
                step = _evaluate(session, blobs, tuf, gate_id, clock, on_release)
        except Exception:  # one broken gate must not stop the others; it is retried next round
            logger.exception("evaluating rollout gate %d failed", gate_id)
            continue
        if step is not None:
            steps.append(step)
    return steps


def rollout_status(*, session: Session, scene: str, channel: str) -> tuple[ReleaseRow, RolloutGate | None]:
    """The channel's live release and its newest gate (None if it never had one).

    Raises:
        NotFoundError: the channel has no release.
    """
    live = releases.latest_release(session=session, scene=scene, channel=channel)
    if live is None:
        raise NotFoundError(f"scene {scene} has no release on channel {channel}")
    gate = session.scalars(
        select(RolloutGate)
        .where(RolloutGate.scene == scene, RolloutGate.channel == channel)
        .order_by(RolloutGate.id.desc())
        .limit(1)
    ).first()
    return live, gate


def live_rollouts(*, session: Session) -> list[tuple[ReleaseRow, RolloutGate | None]]:
    """Every channel's live release with its newest gate (for /metrics), one query each."""
    newest = select(func.max(ReleaseRow.id)).group_by(ReleaseRow.scene, ReleaseRow.channel)
    lives = list(session.scalars(select(ReleaseRow).where(ReleaseRow.id.in_(newest))))
    newest_gates = select(func.max(RolloutGate.id)).group_by(RolloutGate.scene, RolloutGate.channel)
    gates = {
        (g.scene, g.channel): g for g in session.scalars(select(RolloutGate).where(RolloutGate.id.in_(newest_gates)))
    }
    return [(live, gates.get((live.scene, live.channel))) for live in lives]


def judge_gate(session: Session, gate: RolloutGate) -> Judgement:
    """The gate's verdict on the telemetry received so far."""
    since = gate.created_at.replace(second=0, microsecond=0)
    new = _arm(session, gate.scene, [gate.package_version], since)
    baseline = _arm(session, gate.scene, gate.baseline_versions, since) if gate.baseline_versions else None
    return judge(
        new, baseline, GateSpec.model_validate(gate.spec), step_inferences=new.inferences - gate.step_inferences
    )


def _evaluate(
    session: Session,
    blobs: BlobStore,
    tuf: TufRepository,
    gate_id: int,
    clock: Clock,
    on_release: Callable[[Session, ReleaseRow], None],
) -> dict[str, Any] | None:
    with publishing(session=session, tuf=tuf):
        gate = session.get(RolloutGate, gate_id)
        if gate is None or gate.state != OBSERVING:
            return None
        live = releases.latest_release(session=session, scene=gate.scene, channel=gate.channel)
        now = clock()
        gate.updated_at = now
        if live is None or not _follows(session, gate, live):
            gate.state = "superseded"
            session.commit()
            return None
        spec = GateSpec.model_validate(gate.spec)
        _adopt_operator_widen(gate, spec, live)
        judgement = judge_gate(session, gate)
        gate.evidence = judgement.to_json()
        if live.paused or live.kill_switch:
            gate.evidence = {**gate.evidence, "waiting": "the rollout is paused or killed by an operator"}
            session.commit()
            return None
        if judgement.verdict == "worse":
            return _act(session, blobs, tuf, gate, live, spec, spec.on_fail, judgement, now, on_release)
        dwelt = (now - gate.step_started_at).total_seconds() >= spec.min_step_seconds
        if judgement.verdict == "pass" and dwelt:
            action: GateAction = "advance" if gate.step + 1 < len(spec.steps) else "complete"
            return _act(session, blobs, tuf, gate, live, spec, action, judgement, now, on_release)
        session.commit()
        return None


def _act(
    session: Session,
    blobs: BlobStore,
    tuf: TufRepository,
    gate: RolloutGate,
    live: ReleaseRow,
    spec: GateSpec,
    action: GateAction,
    judgement: Judgement,
    now: datetime,
    on_release: Callable[[Session, ReleaseRow], None],
) -> dict[str, Any]:
    """Record the step on the gate and in the audit log and publish the release it implies, in one commit.

    ``advance`` widens to the next step, ``pause`` pauses, ``rollback`` reverts the rollout,
    ``complete`` only closes the gate (the last step is already live).
    """
    to_percent = spec.steps[gate.step + 1] if action == "advance" else live.rollout_percent
    entry = {
        "at": now.isoformat(),
        "action": action,
        "release_id": live.id,
        "from_percent": live.rollout_percent,
        "to_percent": to_percent if action in ("advance", "complete") else None,
        "evidence": judgement.to_json(),
    }
    gate.history = [*gate.history, entry]
    if action == "advance":
        gate.step += 1
        gate.step_started_at = now
        gate.step_inferences = judgement.new_inferences
    else:
        gate.state = _STOPPED[action]
    detail = {"gate_id": gate.id, "scene": gate.scene, "channel": gate.channel, "package_version": gate.package_version}
    log_action(session=session, actor=GATE_ACTOR, action=f"gate_{action}", detail={**detail, **entry})
    store, scene, channel = PublicationStore(session, blobs, tuf), gate.scene, gate.channel
    published: ReleaseRow | None = None
    if action == "advance":
        published = releases.widen_release(
            store=store, scene=scene, channel=channel, rollout_percent=to_percent, actor=GATE_ACTOR
        )
    elif action == "pause":
        published = releases.set_paused(store=store, scene=scene, channel=channel, paused=True, actor=GATE_ACTOR)
    elif action == "rollback":
        published = releases.revert_rollout(store=store, scene=scene, channel=channel, actor=GATE_ACTOR)
    else:
        session.commit()
    if published is not None:  # committed with the gate's change; remember it as the gate's release
        gate.release_id = published.id
        session.commit()
        on_release(session, published)
    logger.info(
        "rollout gate %d of %s %s on %s: %s (%s)",
        gate.id,
        gate.scene,
        gate.package_version,
        gate.channel,
        action,
        "; ".join(judgement.reasons) or judgement.verdict,
    )
    return {"gate_id": gate.id, **{k: v for k, v in entry.items() if k != "evidence"}}


def _follows(session: Session, gate: RolloutGate, live: ReleaseRow) -> bool:
    """Whether the live release still is the gate's rollout: only adjustments since the gate's last release."""
    if live.id == gate.release_id:
        return True
    since = session.scalars(
        select(ReleaseRow.operation).where(
            ReleaseRow.scene == gate.scene, ReleaseRow.channel == gate.channel, ReleaseRow.id > gate.release_id
        )
    )
    if all(operation in _ADJUSTMENTS for operation in since) and live.package_version == gate.package_version:
        gate.release_id = live.id
        return True
    return False


def _adopt_operator_widen(gate: RolloutGate, spec: GateSpec, live: ReleaseRow) -> None:
    """An operator widened past the gate's step: continue from the step the rollout is at."""
    while gate.step + 1 < len(spec.steps) and live.rollout_percent >= spec.steps[gate.step + 1]:
        gate.step += 1


def _observing(session: Session, *, scene: str, channel: str) -> Iterable[RolloutGate]:
    return session.scalars(
        select(RolloutGate).where(
            RolloutGate.scene == scene, RolloutGate.channel == channel, RolloutGate.state == OBSERVING
        )
    )


def _arm(session: Session, scene: str, versions: list[str], since: datetime) -> ArmTotals:
    """An arm's telemetry from the minute ``since`` on: the summed counters and each device's tally."""
    counters: dict[str, dict[str, float]] = {}
    rows = session.execute(
        select(TelemetryCounter.metric, TelemetryCounter.key, func.sum(TelemetryCounter.value))
        .where(
            TelemetryCounter.scene == scene,
            TelemetryCounter.package_version.in_(versions),
            TelemetryCounter.minute >= since,
        )
        .group_by(TelemetryCounter.metric, TelemetryCounter.key)
    )
    for metric, key, total in rows:
        counters.setdefault(metric, {})[key] = float(total)
    columns = [getattr(TelemetryDevice, name) for name in DEVICE_TALLIES]
    tallies = session.execute(
        select(*(func.sum(column) for column in columns))
        .where(
            TelemetryDevice.scene == scene,
            TelemetryDevice.package_version.in_(versions),
            TelemetryDevice.minute >= since,
        )
        .group_by(TelemetryDevice.device_id)
    )
    return ArmTotals.from_counters(
        counters, [DeviceTally(**dict(zip(DEVICE_TALLIES, map(float, row), strict=True))) for row in tallies]
    )
