"""Releases: create one on a channel, then widen, pause, resume, roll back or kill it.

``POST /api/v1/scenes/{scene}/releases`` starts a rollout; the operations under
``/api/v1/scenes/{scene}/channels/{channel}/`` (widen, pause, resume, revert, rollback,
kill-switch) each publish a new signed release derived from the live one. All need an ``operator`` token and land in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from fastapi.types import DecoratedCallable

from pitahaya.registry.api.deps import ContextDep, OperatorDep, SceneDep, SessionDep, StoreDep
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
from pitahaya.registry.services.publication import PublicationStore

router = APIRouter(prefix="/api/v1/scenes/{scene}", tags=["releases"])

ChannelPath = Annotated[str, Path(pattern=CHANNEL_PATTERN)]
_WRITE_RESPONSES: Responses = {**JSON_WRITE, 404: {}, 409: {}}


def _publishes_release(path: str, **route: Any) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``POST <path>``, a write that publishes a new release and answers it (201); ``route``:
    more `APIRouter.post` arguments."""
    return router.post(
        path, status_code=status.HTTP_201_CREATED, response_model=ReleasePublic, responses=_WRITE_RESPONSES, **route
    )


@_publishes_release("/releases")
def create_release(
    scene: SceneDep, body: ReleaseCreate, store: StoreDep, context: ContextDep, actor: OperatorDep
) -> ReleasePublic:
    """Release a published package on a channel and publish the signed release document.

    With a ``gate`` the release starts at the gate's first step and the registry advances,
    pauses or rolls it back on its own as device telemetry arrives (see ``.../rollout``).
    """
    gate = body.gate
    row = service.create_release(
        store=store,
        scene=scene,
        version=body.version,
        channel=body.channel,
        rollout_percent=gate.steps[0] if gate is not None else body.rollout_percent,
        kill_switch=body.kill_switch,
        actor=actor.name,
        targeting=body.targeting.to_targeting() if body.targeting is not None else None,
        paused=body.paused,
        before_commit=(lambda row: gates.open_gate(session=store.session, release=row, spec=gate)) if gate else None,
    )
    return _published(context, store, row)


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


@_publishes_release("/channels/{channel}/widen")
def widen_release(
    scene: SceneDep, channel: ChannelPath, body: ReleaseWiden, store: StoreDep, context: ContextDep, actor: OperatorDep
) -> ReleasePublic:
    """Raise the live release's rollout percentage."""
    percent = body.rollout_percent
    row = service.widen_release(store=store, scene=scene, channel=channel, rollout_percent=percent, actor=actor.name)
    return _published(context, store, row)


def _pausing_route(name: str, *, paused: bool, description: str) -> None:
    """Add ``POST .../channels/{channel}/<name>`` (operation ``<name>_release``): publish the live
    release again with ``paused`` set (pause) or cleared (resume)."""

    def set_paused(
        scene: SceneDep, channel: ChannelPath, store: StoreDep, context: ContextDep, actor: OperatorDep
    ) -> ReleasePublic:
        row = service.set_paused(store=store, scene=scene, channel=channel, paused=paused, actor=actor.name)
        return _published(context, store, row)

    _publishes_release(f"/channels/{{channel}}/{name}", name=f"{name}_release", description=description)(set_paused)


_pausing_route(
    "pause",
    paused=True,
    description="Halt the rollout: every device returns to the previous version on its next refresh.",
)
_pausing_route("resume", paused=False, description="Resume a paused rollout at its percentage.")


@_publishes_release("/channels/{channel}/rollback")
def rollback_release(
    scene: SceneDep,
    channel: ChannelPath,
    body: ReleaseRollback,
    store: StoreDep,
    context: ContextDep,
    actor: OperatorDep,
) -> ReleasePublic:
    """Move every device on the channel to an older package (a new release at 100 %)."""
    row = service.rollback_release(store=store, scene=scene, channel=channel, version=body.version, actor=actor.name)
    return _published(context, store, row)


@_publishes_release("/channels/{channel}/revert")
def revert_rollout(
    scene: SceneDep, channel: ChannelPath, store: StoreDep, context: ContextDep, actor: OperatorDep
) -> ReleasePublic:
    """Undo the live rollout: every device returns to what it ran before that release."""
    row = service.revert_rollout(store=store, scene=scene, channel=channel, actor=actor.name)
    return _published(context, store, row)


@_publishes_release("/channels/{channel}/kill-switch")
def set_kill_switch(
    scene: SceneDep, channel: ChannelPath, body: KillSwitch, store: StoreDep, context: ContextDep, actor: OperatorDep
) -> ReleasePublic:
    """Send every device on the channel to the default policy (``enabled: true``), or undo it."""
    row = service.set_kill_switch(store=store, scene=scene, channel=channel, enabled=body.enabled, actor=actor.name)
    return _published(context, store, row)


def _published(context: ContextDep, store: PublicationStore, row: ReleaseRow) -> ReleasePublic:
    """Tell the ops view (MLflow) of the release, then answer with it."""
    context.forwarder.mark_release(**service.announcement(session=store.session, row=row))
    return ReleasePublic.model_validate(row)
