"""The one table mapping registry errors to HTTP statuses.

Services raise `RequestError` leaves with a message written for the caller; this handler
turns them into ``{"detail": message}`` with the status below, the same shape FastAPI uses
for its own errors, so clients read one field. 401 adds ``WWW-Authenticate``, 429 adds
``Retry-After``; a package refused at pre-flight (`PreflightError`) adds ``reason``, the
device's reason code. A failing backend (`StorageUnavailableError`) or no free pre-flight
slot (`BusyError`) is a 503 with ``Retry-After``: retry later. A malformed publisher-signatures
header (`pitahaya.publisher.errors.SignatureHeaderError`, from the push wire format's parser)
answers as an `InvalidArgumentError`.
"""

from __future__ import annotations

import math
import reprlib

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pitahaya.publisher.errors import SignatureHeaderError
from pitahaya.registry.errors import (
    AlreadyExistsError,
    AuthenticationError,
    BusyError,
    InvalidArgumentError,
    InvalidPackageError,
    NotFoundError,
    PermissionDeniedError,
    PreflightError,
    RateLimitedError,
    RequestError,
    RetryLaterError,
    StaleDelegationError,
    StorageUnavailableError,
    UnverifiablePackageError,
    UploadTooLargeError,
)

STATUS_BY_ERROR: dict[type[RequestError], int] = {
    InvalidArgumentError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    InvalidPackageError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UploadTooLargeError: status.HTTP_413_CONTENT_TOO_LARGE,
    AlreadyExistsError: status.HTTP_409_CONFLICT,
    UnverifiablePackageError: status.HTTP_409_CONFLICT,
    StaleDelegationError: status.HTTP_409_CONFLICT,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    AuthenticationError: status.HTTP_401_UNAUTHORIZED,
    PermissionDeniedError: status.HTTP_403_FORBIDDEN,
    RateLimitedError: status.HTTP_429_TOO_MANY_REQUESTS,
}


def status_for(error: RequestError) -> int:
    """The HTTP status of an error: its nearest class in `STATUS_BY_ERROR`, else 400."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return status.HTTP_400_BAD_REQUEST


def error_response(exc: RequestError) -> JSONResponse:
    """The JSON response for a request error (also used by middleware, outside routing)."""
    headers: dict[str, str] = {}
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after_seconds)
    content = {"detail": str(exc)}
    if isinstance(exc, PreflightError):
        content["reason"] = exc.reason
    return JSONResponse(status_code=status_for(exc), content=content, headers=headers)


async def _request_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)  # registered for RequestError only
    return error_response(exc)


async def _signature_header_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SignatureHeaderError)  # registered for it only
    return error_response(InvalidArgumentError(str(exc)))


async def _validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with each offending input shown as a short repr.

    The default handler echoes the input as JSON: NaN or 1e309 (an infinity to Python's
    parser) in a body made that echo raise, so a bad request answered 500, and a deeply
    nested or multi-MiB input was echoed whole.
    """
    assert isinstance(exc, RequestValidationError)  # registered for it only
    detail = [
        {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"], "input": _shown(error.get("input"))}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail})


def _shown(value: object) -> object:
    """``value`` itself if it is a finite JSON scalar or a short string, else a bounded repr."""
    scalar = value is None or isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
    short_text = isinstance(value, str) and len(value) <= 200
    return value if scalar or short_text else reprlib.repr(value)


async def _unavailable_handler(_request: Request, exc: Exception) -> JSONResponse:
    """503 for a failing backend or no free capacity: the same request may succeed later."""
    retry_after = exc.retry_after_seconds if isinstance(exc, RetryLaterError) else 5
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": str(exc)},
        headers={"Retry-After": str(retry_after)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _request_error_handler)
    app.add_exception_handler(SignatureHeaderError, _signature_header_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StorageUnavailableError, _unavailable_handler)
    app.add_exception_handler(BusyError, _unavailable_handler)
