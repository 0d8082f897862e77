"""405 answers that list every method the path supports in ``Allow`` (RFC 9110).

Starlette answers 405 from the first route whose path matches, so ``OPTIONS
/api/v1/tokens`` said ``Allow: POST`` although ``GET`` is served there too (another route).
This handler collects the methods of every route matching the path. ``OPTIONS`` itself is
not served (there is no CORS here): it is a 405 like any other method a path lacks.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.routing import Match


#: The methods a route of this API may serve.
_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


async def _method_not_allowed(request: Request, _exc: Exception) -> JSONResponse:
    """Ask the router which methods it would route on this path (included routers answer too)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return JSONResponse(
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        content={"detail": f"{request.method} is not allowed here; use {', '.join(allowed)}"},
        headers={"Allow": ", ".join(allowed)},
    )


def install_method_not_allowed(app: FastAPI) -> None:
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
