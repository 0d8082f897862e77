"""Errors of the registry, grouped by what the caller should do next.

::

    RegistryError
    ├── ConfigurationError        settings are missing or invalid: fix the environment, restart
    ├── StorageUnavailableError   the database or blob store failed: retry later (503)
    ├── BusyError                 every pre-flight slot is taken: retry after ``retry_after_seconds`` (503)
    ├── ExpiredMetadataError      the served timestamp expired: start the registry's re-signing
    ├── PublicationPendingError   a staged publication awaits recovery: start the registry, retry
    └── RequestError              the request can never succeed as sent: fix it, don't retry
        ├── InvalidArgumentError  a parameter is malformed, e.g. a scene name (422)
        ├── InvalidPackageError   the archive failed validation (422)
        │   └── PreflightError    a device would reject the package (its ``reason``): fix the package (422)
        ├── UploadTooLargeError   a body or a manifest exceeds its size limit (413)
        ├── AlreadyExistsError    that scene/version is already published; bump the version (409)
        ├── UnverifiablePackageError  the package's stored archive is missing or corrupt (409)
        ├── NotFoundError         the package, release or token does not exist (404)
        ├── AuthenticationError   no token or an unknown/revoked one (401)
        ├── PermissionDeniedError the token's role may not do this (403)
        │   └── PublisherSignatureError  a delegated scene's push lacks valid publisher signatures (403)
        ├── StaleDelegationError  the signed delegated version is not current + 1: re-fetch, re-sign (409)
        └── RateLimitedError      too many requests; wait ``retry_after_seconds`` (429)

`BusyError` and `RateLimitedError` both derive from `RetryLaterError`, which carries
``retry_after_seconds`` (the response's ``Retry-After``).

The service layer raises the `RequestError` leaves; ``pitahaya.registry.api.errors`` maps
each to its HTTP status in one table, and the publisher client (`pitahaya.publisher`) turns
the status back into a ``RegistryRejected`` carrying the server's message.
`SigningKeyError` is the publisher's (``pitahaya.publisher.errors``), imported here: key files
have one format and one loader (``pitahaya.publisher.keys``) for the registry's role keys and
a publisher's alike. Misuse of the API (calling in the wrong order, wrong types) stays
``ValueError``/``RuntimeError`` outside this tree.
"""

from __future__ import annotations

from pitahaya.publisher.errors import SigningKeyError as SigningKeyError


class RegistryError(Exception):
    """Root of every error the registry raises on bad input, bad config or failed I/O."""


class ConfigurationError(RegistryError):
    """A required setting is missing or invalid; the registry cannot start."""


class StorageUnavailableError(RegistryError):
    """The blob store (or another backend) failed or is unreachable; retry later."""


class RetryLaterError(RegistryError):
    """An error that says when the same request may succeed: the HTTP ``Retry-After``.

    Attributes:
        retry_after_seconds: When the caller may try again.
    """

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class BusyError(RetryLaterError):
    """The registry is at its capacity for this kind of work (pre-flights); retry after ``retry_after_seconds``."""


class ExpiredMetadataError(RegistryError):
    """The served TUF timestamp has expired, so devices refuse every update: the registry's
    re-signing is not running (start the registry, check its online keys)."""


class PublicationPendingError(RegistryError):
    """A signed publication waits in the staging folder for recovery; publishing over it would
    fork the version chain. Start the registry (it applies or discards it), then retry."""


class RequestError(RegistryError):
    """The request is invalid as sent; retrying it unchanged will fail again."""


class InvalidArgumentError(RequestError):
    """A request parameter is malformed (e.g. a scene name that is not a lowercase identifier)."""


class InvalidPackageError(RequestError):
    """The uploaded archive is not a valid pitahaya package."""


class PreflightError(InvalidPackageError):
    """Loaded as a device would load it, the package failed: a device would reject it too.

    Attributes:
        reason: The device's stable reason code (``feature_code``, ``model_load``,
            ``self_test``, ``load_timeout``, ``resource_limit``, ``sandbox_crash``, ``package_format``).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UploadTooLargeError(RequestError):
    """A request body (package archive or JSON), or a pushed package's manifest, is larger
    than the configured limit."""


class AlreadyExistsError(RequestError):
    """The resource already exists and is immutable (published packages never change)."""


class NotFoundError(RequestError):
    """The named package, release or file does not exist."""


class UnverifiablePackageError(RequestError):
    """The package's stored archive is missing or no longer matches its digest; release another version."""


class AuthenticationError(RequestError):
    """No bearer token, or one the registry does not know (or revoked)."""


class PermissionDeniedError(RequestError):
    """The token is valid but its role does not allow this operation."""


class PublisherSignatureError(PermissionDeniedError):
    """A push to a scene delegated to publisher keys is unsigned, or its signatures do not meet
    the delegation's threshold: sign it with the scene's publisher key(s)."""


class StaleDelegationError(RequestError):
    """The push signs a delegated metadata version that is not the current one + 1 (another
    push landed first): fetch the delegation again, re-sign and retry."""


class RateLimitedError(RequestError, RetryLaterError):
    """Too many requests from this token or address; retry after ``retry_after_seconds``."""
