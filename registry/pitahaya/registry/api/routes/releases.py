"""``/api/v1/scenes/{scene}/releases``: move a channel to a package version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from pitahaya.registry.api.deps import ContextDep, PublisherDep, SceneDep, SessionDep
from pitahaya.registry.schemas import CHANNEL_PATTERN, ReleaseCreate, ReleasePublic
from pitahaya.registry.services import releases as service

router = APIRouter(prefix="/api/v1/scenes/{scene}/releases", tags=["releases"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReleasePublic,
    responses={401: {}, 404: {}, 422: {}},
)
def create_release(
    scene: SceneDep, body: ReleaseCreate, context: ContextDep, session: SessionDep, actor: PublisherDep
) -> ReleasePublic:
    """Release a published package on a channel and publish the signed release document."""
    row = service.create_release(
        session=session,
        blobs=context.blobs,
        tuf=context.tuf,
        scene=scene,
        version=body.version,
        channel=body.channel,
        rollout_percent=body.rollout_percent,
        kill_switch=body.kill_switch,
        actor=actor,
    )
    return ReleasePublic.model_validate(row)


@router.get("", response_model=list[ReleasePublic])
def list_releases(
    scene: SceneDep, session: SessionDep, channel: Annotated[str | None, Query(pattern=CHANNEL_PATTERN)] = None
) -> list[ReleasePublic]:
    """List a scene's releases, newest first, optionally on one channel."""
    rows = service.list_releases(session=session, scene=scene, channel=channel)
    return [ReleasePublic.model_validate(row) for row in rows]
