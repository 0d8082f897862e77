"""Releases: create one on a channel, then widen, pause, resume, roll back or kill it.

``POST /api/v1/scenes/{scene}/releases`` starts a rollout; the operations under
``/api/v1/scenes/{scene}/channels/{channel}/`` (widen, pause, resume, revert, rollback,
kill-switch) each publish a new signed release derived from the live one. All need an ``operator`` token and land in the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from pitahaya.registry.api.deps import ContextDep, OperatorDep, SceneDep, SessionDep
from pitahaya.registry.api.responses import JSON_WRITE, Responses
from pitahaya.registry.models import ReleaseRow
from pitahaya.registry.schemas import (
    CHANNEL_PATTERN,
    GatePublic,
    KillSwitch,
    ReleaseCreate,
    ReleasePublic,
    ReleaseRollback,
    ReleaseWiden,
    RolloutStatus,
)
from pitahaya.registry.services import gates
from pitahaya.registry.services import releases as service

router = APIRouter(prefix="/api/v1/scenes/{scene}", tags=["releases"])

ChannelPath = Annotated[str, Path(pattern=CHANNEL_PATTERN)]
_WRITE_RESPONSES: Responses = {**JSON_WRITE, 404: {}, 409: {}}


@router.post("/releases", status_code=status.HTTP_201_CREATED, response_model=ReleasePublic, responses=_WRITE_RESPONSES)
def create_release(
    scene: SceneDep, body: ReleaseCreate, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> ReleasePublic:
    """Release a published package on a channel and publish the signed release document.

    With a ``gate`` the release starts at the gate's first step and the registry advances,
    pauses or rolls it back on its own as device telemetry arrives (see ``.../rollout``).
    """
    gate = body.gate
    row = service.create_release(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        version=body.version,
        channel=body.channel,
        rollout_percent=gate.steps[0] if gate is not None else body.rollout_percent,
        kill_switch=body.kill_switch,
        actor=actor.name,
        targeting=body.targeting.to_targeting() if body.targeting is not None else None,
        paused=body.paused,
        before_commit=(lambda row: gates.open_gate(session=session, release=row, spec=gate)) if gate else None,
    )
    return _published(context, session, row)


@router.get("/releases", response_model=list[ReleasePublic])
def list_releases(
    scene: SceneDep, session: SessionDep, channel: Annotated[str | None, Query(pattern=CHANNEL_PATTERN)] = None
) -> list[ReleasePublic]:
    """List a scene's releases, newest first, optionally on one channel."""
    rows = service.list_releases(session=session, scene=scene, channel=channel)
    return [ReleasePublic.model_validate(row) for row in rows]


@router.get("/channels/{channel}/rollout", response_model=RolloutStatus, responses={401: {}, 403: {}, 404: {}})
def rollout_status(scene: SceneDep, channel: ChannelPath, session: SessionDep, _actor: OperatorDep) -> RolloutStatus:
    """The channel's live release and its quality gate: state, step, latest evidence, history."""
    live, gate = gates.rollout_status(session=session, scene=scene, channel=channel)
    release = ReleasePublic.model_validate(live).model_dump()
    gate_public = GatePublic.model_validate(gate) if gate is not None else None
    return RolloutStatus.model_validate({**release, "id": release["release_id"], "gate": gate_public})


@router.post(
    "/channels/{channel}/widen",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def widen_release(
    scene: SceneDep,
    channel: ChannelPath,
    body: ReleaseWiden,
    context: ContextDep,
    session: SessionDep,
    actor: OperatorDep,
) -> ReleasePublic:
    """Raise the live release's rollout percentage."""
    row = service.widen_release(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        channel=channel,
        rollout_percent=body.rollout_percent,
        actor=actor.name,
    )
    return _published(context, session, row)


@router.post(
    "/channels/{channel}/pause",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def pause_release(
    scene: SceneDep, channel: ChannelPath, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> ReleasePublic:
    """Halt the rollout: every device returns to the previous version on its next refresh."""
    return _set_paused(context, session, scene, channel, actor, paused=True)


@router.post(
    "/channels/{channel}/resume",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def resume_release(
    scene: SceneDep, channel: ChannelPath, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> ReleasePublic:
    """Resume a paused rollout at its percentage."""
    return _set_paused(context, session, scene, channel, actor, paused=False)


@router.post(
    "/channels/{channel}/rollback",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def rollback_release(
    scene: SceneDep,
    channel: ChannelPath,
    body: ReleaseRollback,
    context: ContextDep,
    session: SessionDep,
    actor: OperatorDep,
) -> ReleasePublic:
    """Move every device on the channel to an older package (a new release at 100 %)."""
    row = service.rollback_release(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        channel=channel,
        version=body.version,
        actor=actor.name,
    )
    return _published(context, session, row)


@router.post(
    "/channels/{channel}/revert",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def revert_rollout(
    scene: SceneDep, channel: ChannelPath, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> ReleasePublic:
    """Undo the live rollout: every device returns to what it ran before that release."""
    row = service.revert_rollout(
        session=session, blobs=context.blobs, tuf=context.tuf, scene=scene, channel=channel, actor=actor.name
    )
    return _published(context, session, row)


@router.post(
    "/channels/{channel}/kill-switch",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses=_WRITE_RESPONSES,
)
def set_kill_switch(
    scene: SceneDep,
    channel: ChannelPath,
    body: KillSwitch,
    context: ContextDep,
    session: SessionDep,
    actor: OperatorDep,
) -> ReleasePublic:
    """Send every device on the channel to the default policy (``enabled: true``), or undo it."""
    row = service.set_kill_switch(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        channel=channel,
        enabled=body.enabled,
        actor=actor.name,
    )
    return _published(context, session, row)


def _set_paused(
    context: ContextDep, session: SessionDep, scene: str, channel: str, actor: OperatorDep, *, paused: bool
) -> ReleasePublic:
    """Pause or resume: a new release of the channel with ``paused`` set, audited."""
    row = service.set_paused(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        channel=channel,
        paused=paused,
        actor=actor.name,
    )
    return _published(context, session, row)


def _published(context: ContextDep, session: SessionDep, row: ReleaseRow) -> ReleasePublic:
    """Tell the ops view (MLflow) of the release, then answer with it."""
    context.forwarder.mark_release(**service.announcement(session=session, row=row))
    return ReleasePublic.model_validate(row)
