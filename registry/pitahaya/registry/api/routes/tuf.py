"""``/tuf/``: the static files a TUF client (``tuf.ngclient.Updater``) fetches.

Point the updater at ``metadata_base_url=<registry>/tuf/metadata/`` and
``target_base_url=<registry>/tuf/targets/``. Versioned metadata and targets are immutable
and cacheable forever; ``timestamp.json`` and ``root.json`` (the newest root, for
bootstrapping a client) change and must be revalidated. A CDN may serve all of it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from pitahaya.registry.api.deps import ContextDep, SessionDep
from pitahaya.registry.services.targets import get_target_sha256
from pitahaya.registry.tuf_repo import parse_consistent_target

router = APIRouter(prefix="/tuf", tags=["tuf"])

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_MUTABLE_METADATA = frozenset({"timestamp.json", "root.json"})


@router.get(
    "/metadata/{name}", response_class=Response, responses={200: {"content": {"application/json": {}}}, 404: {}}
)
def get_tuf_metadata(name: str, context: ContextDep) -> Response:
    """Serve a signed metadata file: ``N.root.json``, ``N.targets.json``, ``N.snapshot.json``,
    ``timestamp.json``, or ``root.json`` (the newest root)."""
    data = context.tuf.metadata_bytes(name)
    cache = REVALIDATE if name in _MUTABLE_METADATA else IMMUTABLE
    return Response(content=data, media_type="application/json", headers={"Cache-Control": cache})


@router.get(
    "/targets/{name:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: {}},
)
def get_tuf_target(
    name: str,
    context: ContextDep,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Serve a target by its consistent-snapshot name ``<dir>/<sha256>.<basename>``."""
    target_path, sha256 = parse_consistent_target(name)
    get_target_sha256(session=session, target_path=target_path, sha256=sha256)
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{sha256}"'}
    if if_none_match is not None and f'"{sha256}"' in if_none_match:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = "application/json" if target_path.endswith(".json") else "application/octet-stream"
    return Response(content=context.blobs.get(sha256), media_type=media_type, headers=headers)
