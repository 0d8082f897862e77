"""What routes need, as ``Annotated`` dependencies: a signature lists its needs.

`RegistryContext` is built once by ``create_app`` and kept on ``app.state``; nothing here
reads the environment or touches the disk at import time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.client_runtime.package import validate_scene_name
from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.errors import InvalidArgumentError, UploadTooLargeError
from pitahaya.registry.settings import Settings
from pitahaya.registry.tuf_repo import TufRepository

#: Recorded as ``created_by`` for writes made with the registry token. Named tokens (one per
#: publisher) will replace this single identity.
PUBLISHER = "publisher"


@dataclass(frozen=True)
class RegistryContext:
    """The long-lived objects of one running registry."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    tuf: TufRepository


def get_context(request: Request) -> RegistryContext:
    context: RegistryContext = request.app.state.registry
    return context


ContextDep = Annotated[RegistryContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="The registry token (PITAHAYA_REGISTRY_TOKEN).")


def require_publisher(
    context: ContextDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """Check the bearer token in constant time and return the actor name for the audit log.

    Raises:
        HTTPException: 401 when the token is missing or wrong.
    """
    expected = context.settings.registry_token.get_secret_value().encode()
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid registry token: send 'Authorization: Bearer <PITAHAYA_REGISTRY_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return PUBLISHER


PublisherDep = Annotated[str, Depends(require_publisher)]


def valid_scene(scene: str) -> str:
    """The ``{scene}`` path parameter, checked like the package format checks it.

    Raises:
        InvalidArgumentError: not a lowercase identifier.
    """
    try:
        return validate_scene_name(scene)
    except ValueError as e:
        raise InvalidArgumentError(str(e)) from e


SceneDep = Annotated[str, Depends(valid_scene)]


async def read_archive_body(request: Request, context: ContextDep) -> bytes:
    """The raw request body, refused as soon as it exceeds ``max_upload_bytes``.

    Raises:
        UploadTooLargeError: the declared or actual size is over the limit.
    """
    limit = context.settings.max_upload_bytes
    too_large = UploadTooLargeError(f"package archive exceeds the upload limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    return bytes(body)


ArchiveBodyDep = Annotated[bytes, Depends(read_archive_body)]
