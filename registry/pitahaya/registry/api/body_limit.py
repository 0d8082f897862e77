"""A size cap on the request bodies the framework buffers, answered 413 before the app reads them.

FastAPI reads a JSON body whole, and parses it, before any route or dependency runs, so no
route code can refuse a 100 MiB release body in time. `BodySizeLimit` (plain ASGI) takes the
body off the connection itself: a declared ``Content-Length`` over the limit is refused at
once, a chunked body as soon as the bytes read pass it; a body within the limit is replayed to
the app unchanged. Routes that stream their body under their own limit (the package upload,
``max_upload_bytes``, read only after the token is checked) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pitahaya.registry.api.errors import error_response
from pitahaya.registry.errors import UploadTooLargeError


class BodySizeLimit:
    """ASGI middleware: 413 for an HTTP request body over ``limit`` bytes.

    Args:
        app: The wrapped application.
        limit: Largest body, in bytes (``Settings.max_json_body_bytes``).
        streamed: ``(method, path)`` of routes that read and cap their body themselves.
    """

    def __init__(self, app: ASGIApp, *, limit: int, streamed: Collection[tuple[str, str]]) -> None:
        self.app = app
        self.limit = limit
        self.streamed = frozenset(streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.streamed:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = UploadTooLargeError(
            f"request body exceeds the limit of {self.limit} bytes (PITAHAYA_MAX_JSON_BODY_BYTES)"
        )
        await error_response(too_large)(scope, receive, send)
