"""What routes need, as ``Annotated`` dependencies: a signature lists its needs.

`RegistryContext` is built once by ``create_app`` and kept on ``app.state``; nothing here
reads the environment or touches the disk at import time.

Auth: every write names the role it needs (``PublisherDep``, ``OperatorDep``, ``ClientDep``,
``AdminDep``). The dependency resolves the bearer token (the bootstrap token from settings
or a stored API token), counts the request against the token's rate limit, checks the role
and returns the `Principal`, whose name goes into the audit log.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pitahaya.client_runtime.package import validate_scene_name
from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.errors import (
    AuthenticationError,
    InvalidArgumentError,
    PermissionDeniedError,
    UploadTooLargeError,
)
from pitahaya.registry.ratelimit import RequestLimiter
from pitahaya.registry.schemas import SCENE_PATTERN
from pitahaya.registry.services.preflight import Preflight
from pitahaya.registry.services.publication import PublicationStore
from pitahaya.registry.services.tokens import Principal, Role, find_principal
from pitahaya.registry.settings import Settings
from pitahaya.registry.tuf import TufRepository

if TYPE_CHECKING:
    from pitahaya.registry.telemetry_export import TelemetryForwarder

#: The audit-log actor of writes made with the bootstrap token (``PITAHAYA_REGISTRY_TOKEN``).
BOOTSTRAP = "bootstrap"


@dataclass(frozen=True)
class RegistryContext:
    """The long-lived objects of one running registry."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    tuf: TufRepository
    limiter: RequestLimiter
    forwarder: TelemetryForwarder
    preflight: Preflight
    #: (target path, sha256) pairs already resolved: a published target is immutable and never
    #: unpublished, so the database is asked once per pair and process.
    published_targets: set[tuple[str, str]] = field(default_factory=set)


def get_context(request: Request) -> RegistryContext:
    context: RegistryContext = request.app.state.registry
    return context


ContextDep = Annotated[RegistryContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_store(context: ContextDep, session: SessionDep) -> PublicationStore:
    """The request's session with the registry's blob store and TUF repository, for a publishing service."""
    return PublicationStore(session=session, blobs=context.blobs, tuf=context.tuf)


StoreDep = Annotated[PublicationStore, Depends(get_store)]

_bearer = HTTPBearer(auto_error=False, description="An API token, or the bootstrap PITAHAYA_REGISTRY_TOKEN.")


def authenticate(
    context: ContextDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller behind the bearer token, after counting the request against its rate limit
    (every role but ``client``, whose token a whole fleet shares).

    Raises:
        AuthenticationError: no token, or an unknown or revoked one (401).
        RateLimitedError: the token is over its limit (429).
    """
    if credentials is None:
        raise AuthenticationError("missing API token: send 'Authorization: Bearer <token>'")
    secret = credentials.credentials
    bootstrap = context.settings.registry_token.get_secret_value()
    if hmac.compare_digest(secret.encode(), bootstrap.encode()):
        principal: Principal | None = Principal(name=BOOTSTRAP, role=Role.ADMIN)
    else:
        principal = find_principal(session=session, secret=secret)
    if principal is None:
        raise AuthenticationError("invalid or revoked API token")
    if principal.role is not Role.CLIENT:
        # A client token ships inside the app: the whole fleet shares it, so a per-token limit
        # would cap the fleet's telemetry, not one caller. Clients are held by the per-address
        # limit (and the telemetry service counts each device once per minute and version).
        context.limiter.hit_token(principal.name)
    return principal


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits tokens with ``role`` (or admin) and refuses others with 403."""

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise PermissionDeniedError(
                f"token {principal.name!r} has role {principal.role.value!r}; this needs {role.value!r}"
            )
        return principal

    return check


PublisherDep = Annotated[Principal, Depends(require(Role.PUBLISHER))]
OperatorDep = Annotated[Principal, Depends(require(Role.OPERATOR))]
ClientDep = Annotated[Principal, Depends(require(Role.CLIENT))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]


def valid_scene(
    scene: Annotated[str, Path(pattern=SCENE_PATTERN, description="Scene name, a lowercase identifier.")],
) -> str:
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
