"""``/api/v1/packages``: push and look up package archives."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, status

from pitahaya.registry.api.deps import ArchiveBodyDep, ContextDep, PublisherDep, SceneDep, SessionDep, StoreDep
from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.schemas import SCENE_PATTERN, VERSION_PATTERN, DelegationPublic, PackagePublic
from pitahaya.registry.services import packages as service
from pitahaya.publisher.wire import PublisherSignatures
from pitahaya.registry.tuf import publisher_role

SignaturesHeader = Annotated[
    str | None,
    Header(
        alias=PublisherSignatures.HEADER,
        description="For a scene delegated to publisher keys: base64url JSON {version, expires, signatures} "
        "over the scene role's next version (see `pitahaya push --signing-key`).",
    ),
]

router = APIRouter(prefix="/api/v1", tags=["packages"])

#: Routes that read their body as a stream under their own limit, exempt from the JSON body cap.
STREAMED_BODY_ROUTES = frozenset({("POST", f"{router.prefix}/packages")})

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
    responses={401: {}, 403: {}, 409: {}, 413: {}, 422: {}, 429: {}, 503: {}},
)
def push_package(
    actor: PublisherDep,
    archive: ArchiveBodyDep,
    context: ContextDep,
    store: StoreDep,
    signatures: SignaturesHeader = None,
) -> PackagePublic:
    """Publish a package archive: validate it, store it, and sign it as a TUF target.

    A scene delegated to publisher keys needs the publisher's signatures (403 without them,
    409 when they sign an outdated role version); other scenes are signed by the registry.
    Before anything is stored, the package is loaded as a device would (pre-flight): 422 with
    the device's ``reason`` code if a device would reject it, 503 with ``Retry-After`` when
    every pre-flight slot stays busy.
    """
    # `actor` comes first so a request without a valid token is refused before its body is read.
    row = service.push_package(
        store=store,
        archive=archive,
        actor=actor.name,
        preflight=context.preflight,
        max_manifest_bytes=context.settings.max_manifest_bytes,
        signatures=PublisherSignatures.from_header(signatures) if signatures is not None else None,
    )
    return PackagePublic.model_validate(row)


@router.get("/scenes/{scene}/delegation", response_model=DelegationPublic, responses={404: {}})
def get_delegation(scene: SceneDep, context: ContextDep) -> DelegationPublic:
    """The scene's publisher delegation and the current signed version of its role (404: not delegated)."""
    found = context.tuf.publishers.of(scene)
    if found is None:
        raise NotFoundError(f"scene {scene} is not delegated: the registry's online key signs its packages")
    role, keys = found
    current = context.tuf.publishers.metadata(scene)
    return DelegationPublic(
        scene=scene,
        role=publisher_role(scene),
        threshold=role.threshold,
        paths=list(role.paths or []),
        keys={keyid: key.to_dict() for keyid, key in keys.items()},
        metadata=current.to_dict() if current is not None else None,
    )


@router.get("/packages", response_model=list[PackagePublic])
def list_packages(
    session: SessionDep, scene: Annotated[str | None, Query(pattern=SCENE_PATTERN)] = None
) -> list[PackagePublic]:
    """List published packages, optionally of one scene."""
    return [PackagePublic.model_validate(row) for row in service.list_packages(session=session, scene=scene)]


@router.get("/scenes/{scene}/packages/{version}", response_model=PackagePublic, responses={404: {}})
def get_package(
    scene: SceneDep, version: Annotated[str, Path(pattern=VERSION_PATTERN)], session: SessionDep
) -> PackagePublic:
    """Get one published package."""
    return PackagePublic.model_validate(service.get_package(session=session, scene=scene, version=version))
