"""``/tuf/``: the static files a TUF client (``tuf.ngclient.Updater``) fetches.

Point the updater at ``metadata_base_url=<registry>/tuf/metadata/`` and
``target_base_url=<registry>/tuf/targets/``. Versioned metadata and targets are immutable
and cacheable forever; ``timestamp.json`` and ``root.json`` (the newest root, for
bootstrapping a client) change and must be revalidated. Every response carries a strong
``ETag`` (the sha256 of the bytes) and answers ``If-None-Match`` with 304, so polling
devices and CDNs revalidate for the price of a header. Targets honour a single ``Range``
(resumed downloads). A CDN may serve all of it.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from pitahaya.registry.api.deps import ContextDep, SessionDep
from pitahaya.registry.services.targets import get_target_sha256
from pitahaya.registry.tuf import TufRepository, parse_consistent_target

router = APIRouter(prefix="/tuf", tags=["tuf"])

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_MUTABLE_METADATA = frozenset({"timestamp.json", "root.json"})
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

IfNoneMatch = Annotated[str | None, Header()]


def _matches(if_none_match: str | None, etag: str) -> bool:
    return if_none_match is not None and (if_none_match.strip() == "*" or etag in if_none_match)


@router.get(
    "/metadata/{name}",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 304: {}, 404: {}},
)
async def get_tuf_metadata(name: str, context: ContextDep, if_none_match: IfNoneMatch = None) -> Response:
    """Serve a signed metadata file: ``N.root.json``, ``N.targets.json``, ``N.snapshot.json``,
    ``timestamp.json``, or ``root.json`` (the newest root).

    Served requests normally take `pitahaya.registry.api.fast_paths.TufMetadataFastPath`,
    which answers the same way without the framework's routing; this route documents the
    endpoint and answers what the fast path hands on (errors).
    """
    code, headers, body = metadata_answer(context.tuf, name, if_none_match)
    return Response(content=body, status_code=code, headers=headers)


def metadata_answer(tuf: TufRepository, name: str, if_none_match: str | None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body for ``GET /tuf/metadata/<name>``: 200 with the file, or 304.

    Runs on the event loop: a stat plus, rarely, a few-KB read is cheaper than a thread hop. With
    the metadata in the database, a poll naming the version this replica just read costs no
    query (`SqlMetadataStore.recent_digest`); any other costs one short indexed query.

    Raises:
        NotFoundError: no metadata file by that name.
    """
    cache_control = REVALIDATE if name in _MUTABLE_METADATA else IMMUTABLE
    recent = tuf.store.recent_digest(name)
    if recent is not None and _matches(if_none_match, f'"{recent}"'):
        return status.HTTP_304_NOT_MODIFIED, {"Cache-Control": cache_control, "ETag": f'"{recent}"'}, b""
    data, digest = tuf.metadata_file(name)
    headers = {"Cache-Control": cache_control, "ETag": f'"{digest}"'}
    if _matches(if_none_match, headers["ETag"]):
        return status.HTTP_304_NOT_MODIFIED, headers, b""
    return status.HTTP_200_OK, headers | {"Content-Type": "application/json"}, data


@router.get(
    "/targets/{name:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {}, 304: {}, 404: {}, 416: {}},
)
def get_tuf_target(
    name: str,
    context: ContextDep,
    session: SessionDep,
    if_none_match: IfNoneMatch = None,
    range: Annotated[str | None, Header()] = None,  # noqa: A002 - the header's name
) -> Response:
    """Serve a target by its consistent-snapshot name ``<dir>/<sha256>.<basename>``."""
    target_path, sha256 = parse_consistent_target(name)
    if (target_path, sha256) not in context.published_targets:  # published targets never change
        get_target_sha256(session=session, target_path=target_path, sha256=sha256)
        context.published_targets.add((target_path, sha256))
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
    if _matches(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = "application/json" if target_path.endswith(".json") else "application/octet-stream"
    data = context.blobs.get(sha256)
    if range is not None and (span := _byte_range(range, len(data))) is not None:
        if not span:  # unsatisfiable
            headers["Content-Range"] = f"bytes */{len(data)}"
            return Response(status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE, headers=headers)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(
            content=data[start : end + 1], status_code=status.HTTP_206_PARTIAL_CONTENT, media_type=media_type,
            headers=headers,
        )  # fmt: skip
    return Response(content=data, media_type=media_type, headers=headers)


def _byte_range(header: str, size: int) -> tuple[int, int] | tuple[()] | None:
    """A single ``bytes=`` range as inclusive ``(start, end)``; ``()`` if unsatisfiable; None to ignore it.

    Multi-range and malformed headers are ignored (RFC 9110 allows answering 200 with the whole file).
    """
    match = _RANGE_RE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        return (max(size - length, 0), size - 1) if length and size else ()
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return ()
    return start, end
