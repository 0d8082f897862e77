"""pitahaya registry: stores algorithm packages and delivers them to devices as signed TUF targets.

Publishers push package archives and create releases over the HTTP API (or with the light
publisher client, ``pitahaya.publisher.RegistryClient``); devices fetch static, signed TUF
metadata and targets from ``/tuf/``. A scene may be delegated to publisher keys: then only
pushes signed with them publish its packages (``RegistryClient.push(archive, signers=[...])``,
`PublisherSignatureError` otherwise). Operators move rollouts (widen, pause, resume, rollback,
kill switch); devices post telemetry, aggregated per minute and forwarded to MLflow and
``/metrics``. Run it with ``serve(load_settings())`` or ``create_app(settings)`` under any ASGI
server. `TufRepository` is the registry's signed metadata and its keys, for the admin's key
operations (``pitahaya keys``: init, list, rotate, resign, delegate).
"""

from pitahaya.registry.app import create_app
from pitahaya.registry.errors import (
    AlreadyExistsError,
    AuthenticationError,
    BusyError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidPackageError,
    NotFoundError,
    PermissionDeniedError,
    PreflightError,
    PublisherSignatureError,
    RateLimitedError,
    RegistryError,
    RequestError,
    SigningKeyError,
    StaleDelegationError,
    StorageUnavailableError,
    UnverifiablePackageError,
    UploadTooLargeError,
)
from pitahaya.registry.maintenance import collect_garbage, migrate
from pitahaya.registry.server import serve
from pitahaya.registry.services.blob_gc import GcResult
from pitahaya.registry.settings import Settings, load_settings
from pitahaya.registry.tuf import KeyInfo, TufRepository

__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "BusyError",
    "ConfigurationError",
    "GcResult",
    "InvalidArgumentError",
    "InvalidPackageError",
    "KeyInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "PreflightError",
    "PublisherSignatureError",
    "RateLimitedError",
    "RegistryError",
    "RequestError",
    "Settings",
    "SigningKeyError",
    "StaleDelegationError",
    "StorageUnavailableError",
    "TufRepository",
    "UnverifiablePackageError",
    "UploadTooLargeError",
    "collect_garbage",
    "create_app",
    "load_settings",
    "migrate",
    "serve",
]
