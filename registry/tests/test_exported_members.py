"""Pin the public API: it must not grow or shrink by accident."""

from __future__ import annotations

import pitahaya.registry as registry


def test_all() -> None:
    assert registry.__all__ == [
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
        "serve",
    ]
    assert registry.__all__ == sorted(registry.__all__)
    for name in registry.__all__:
        assert hasattr(registry, name)
