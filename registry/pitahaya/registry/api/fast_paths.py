"""A route-free answer to the request every device repeats: ``GET /tuf/metadata/<name>``.

Devices poll ``timestamp.json`` with ``If-None-Match`` and almost always get a 304. The
answer is a cached file's ETag, cheaper than FastAPI's routing, dependency injection and
response classes around it (on 2 cores those cap a bare FastAPI hello-world near 6,000 req/s;
a plain ASGI answer does over 30,000). `TufMetadataFastPath` sits inside the observability
middleware (request id, metrics under the route's template, access log) and in front of the
app: it answers a metadata GET it can serve with `metadata_answer`, the route's own logic, and
hands everything else on, errors included, so the app still owns every error response.
"""

from __future__ import annotations

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from pitahaya.registry.api.routes.tuf import metadata_answer
from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.tuf import TufRepository

PREFIX = "/tuf/metadata/"


class TufMetadataFastPath:
    """ASGI middleware serving TUF metadata GETs directly; see the module docstring.

    Args:
        app: The registry app (everything else goes there).
        tuf: The repository whose files are served.
        route: The app's ``/tuf/metadata/{name}`` route, put in the scope so metrics and logs
            label these requests as the app would.
    """

    def __init__(self, app: ASGIApp, *, tuf: TufRepository, route: BaseRoute) -> None:
        self.app, self.tuf, self.route = app, tuf, route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            code, headers, body = metadata_answer(self.tuf, path[len(PREFIX) :], _if_none_match(scope))
        except NotFoundError:
            await self.app(scope, receive, send)  # the app's 404, as for any other error
            return
        scope["route"] = self.route
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if code != 304:  # a 304 has no body, and its length would describe the file (RFC 9110)
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return value.decode("latin-1")
    return None
