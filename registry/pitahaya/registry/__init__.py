"""pitahaya registry: stores algorithm packages and delivers them to devices as signed TUF targets.

Publishers push package archives and create releases over the HTTP API (or with
`RegistryClient`); devices fetch static, signed TUF metadata and targets from ``/tuf/``.
Run it with ``serve(Settings())`` or ``create_app(settings)`` under any ASGI server.
"""

from pitahaya.registry.app import create_app
from pitahaya.registry.client import RegistryClient
from pitahaya.registry.errors import (
    AlreadyExistsError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidPackageError,
    NotFoundError,
    RegistryClientError,
    RegistryError,
    RegistryRejected,
    RegistryUnavailable,
    RequestError,
    UploadTooLargeError,
)
from pitahaya.registry.server import serve
from pitahaya.registry.settings import Settings, load_settings

__all__ = [
    "AlreadyExistsError",
    "ConfigurationError",
    "InvalidArgumentError",
    "InvalidPackageError",
    "NotFoundError",
    "RegistryClient",
    "RegistryClientError",
    "RegistryError",
    "RegistryRejected",
    "RegistryUnavailable",
    "RequestError",
    "Settings",
    "UploadTooLargeError",
    "create_app",
    "load_settings",
    "serve",
]
