"""``/api/v1/packages``: push and look up package archives."""

from __future__ import annotations

from fastapi import APIRouter, status

from pitahaya.registry.api.deps import ArchiveBodyDep, ContextDep, PublisherDep, SceneDep, SessionDep
from pitahaya.registry.schemas import PackagePublic
from pitahaya.registry.services import packages as service

router = APIRouter(prefix="/api/v1", tags=["packages"])

_ARCHIVE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The package archive (.tar.xz) exactly as built by `pitahaya package`.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/packages",
    status_code=status.HTTP_201_CREATED,
    response_model=PackagePublic,
    openapi_extra=_ARCHIVE_BODY,
    responses={401: {}, 403: {}, 409: {}, 413: {}, 422: {}, 429: {}},
)
def push_package(
    actor: PublisherDep, archive: ArchiveBodyDep, context: ContextDep, session: SessionDep
) -> PackagePublic:
    """Publish a package archive: validate it, store it, and sign it as a TUF target."""
    # `actor` comes first so a request without a valid token is refused before its body is read.
    row = service.push_package(session=session, blobs=context.blobs, tuf=context.tuf, archive=archive, actor=actor.name)
    return PackagePublic.model_validate(row)


@router.get("/packages", response_model=list[PackagePublic])
def list_packages(session: SessionDep, scene: str | None = None) -> list[PackagePublic]:
    """List published packages, optionally of one scene."""
    return [PackagePublic.model_validate(row) for row in service.list_packages(session=session, scene=scene)]


@router.get("/scenes/{scene}/packages/{version}", response_model=PackagePublic, responses={404: {}})
def get_package(scene: SceneDep, version: str, session: SessionDep) -> PackagePublic:
    """Get one published package."""
    return PackagePublic.model_validate(service.get_package(session=session, scene=scene, version=version))
