"""The one table mapping registry errors to HTTP statuses.

Services raise `RequestError` leaves with a message written for the caller; this handler
turns them into ``{"detail": message}`` with the status below, the same shape FastAPI uses
for its own errors, so clients read one field.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from pitahaya.registry.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidPackageError,
    NotFoundError,
    RequestError,
    UploadTooLargeError,
)

STATUS_BY_ERROR: dict[type[RequestError], int] = {
    InvalidArgumentError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidPackageError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UploadTooLargeError: status.HTTP_413_CONTENT_TOO_LARGE,
    AlreadyExistsError: status.HTTP_409_CONFLICT,
    NotFoundError: status.HTTP_404_NOT_FOUND,
}


def status_for(error: RequestError) -> int:
    """The HTTP status of an error: its nearest class in `STATUS_BY_ERROR`, else 400."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return status.HTTP_400_BAD_REQUEST


async def _request_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)  # registered for RequestError only
    return JSONResponse(status_code=status_for(exc), content={"detail": str(exc)})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _request_error_handler)
