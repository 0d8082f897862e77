"""Errors raised by the client runtime, grouped by what the caller should do next.

::

    ClientRuntimeError
    ├── PackageError                 the package is bad: never load it, mark the version bad
    │   ├── PackageFormatError       archive or manifest malformed, file hash mismatch
    │   ├── FeatureCodeError         features.py failed to import or raised
    │   ├── ModelLoadError           model.onnx failed to load or has the wrong signature
    │   ├── SelfTestError            the shipped golden vectors were not reproduced
    │   ├── LoadTimeoutError         loading (import, warm-up, self-test, replay) ran past its deadline
    │   ├── ResourceLimitError       the package ran out of its memory or CPU budget while loading
    │   └── SandboxCrashError        the worker running the package died while loading
    ├── CallError                    one call into a loaded package failed: fall back for this call
    │   ├── CallTimeoutError         the call ran past its deadline (or the worker is still busy)
    │   ├── WorkerLostError          the worker died or was killed; it is being restarted
    │   └── InferenceError           the feature code or the model raised, or returned garbage
    ├── UpdateError                  could not get a verified package: keep the current one
    │   ├── UpdateVerificationError  signed metadata or a target failed verification (TUF)
    │   │   └── MetadataExpiredError  the registry stopped re-signing (freeze?): no new installs
    │   └── UpdateDownloadError      network or registry failure: retry later with backoff
    ├── ReleaseError                 the signed release document is malformed
    └── SandboxUnavailableError      no worker could be started (OS limits, a broken install):
                                     not the package's fault; retry later

Misuse of the API (wrong argument types, calling in the wrong order) raises ``ValueError``
or ``RuntimeError`` and is deliberately outside this tree, so ``except ClientRuntimeError``
never hides a bug.
"""

from __future__ import annotations


class ClientRuntimeError(Exception):
    """Root of every error the client runtime raises on bad data or failed I/O."""

    #: Stable, machine-readable reason reported to monitoring hooks.
    reason: str = "error"


class PackageError(ClientRuntimeError):
    """The package itself is bad; it must never be activated."""

    reason = "package_invalid"


class PackageFormatError(PackageError):
    """The archive, its manifest, or a file hash does not match the format."""

    reason = "package_format"


class FeatureCodeError(PackageError):
    """The package's feature code failed to import or raised while computing features."""

    reason = "feature_code"


class ModelLoadError(PackageError):
    """The ONNX model failed to load or does not match the manifest's input/output spec."""

    reason = "model_load"


class SelfTestError(PackageError):
    """The package did not reproduce its own golden self-test vectors."""

    reason = "self_test"


class LoadTimeoutError(PackageError):
    """Loading the package (import, warm-up, self-test or history replay) ran past its deadline."""

    reason = "load_timeout"


class ResourceLimitError(PackageError):
    """The package exhausted the memory or CPU budget of its sandbox while loading."""

    reason = "resource_limit"


class SandboxCrashError(PackageError):
    """The worker process running the package died while loading it (exit, signal, abort)."""

    reason = "sandbox_crash"


class CallError(ClientRuntimeError):
    """One call into a loaded package did not produce a usable answer; the caller falls back.

    Repeated call errors take the package out of service (the runtime's circuit breaker); a
    single one does not.
    """

    reason = "inference_error"


class CallTimeoutError(CallError):
    """The call ran past its deadline, or the worker is still busy with an earlier one that did."""

    reason = "timeout"


class WorkerLostError(CallError):
    """The worker running the package died or was killed; it is restarted off the call path."""

    reason = "worker_lost"


class InferenceError(CallError):
    """The feature code or the model raised, or answered something that is not a prediction."""

    reason = "inference_error"


class SandboxUnavailableError(ClientRuntimeError):
    """No worker process could be started or it died before running any package code.

    The environment's fault (out of processes or memory, an interpreter that cannot import
    the runtime), never the package's: its version is not marked bad, and loading is retried.
    """

    reason = "sandbox_unavailable"


class UpdateError(ClientRuntimeError):
    """No verified package could be obtained; the current one stays in place."""

    reason = "update_failed"


class UpdateVerificationError(UpdateError):
    """Signed metadata or a downloaded target failed TUF verification."""

    reason = "verification_failed"


class MetadataExpiredError(UpdateVerificationError):
    """The registry's signed metadata has expired: no new package is installed until it is
    re-signed, while the cached, already verified package keeps answering."""

    reason = "metadata_expired"


class UpdateDownloadError(UpdateError):
    """The registry could not be reached or answered with an error."""

    reason = "download_failed"


class ReleaseError(ClientRuntimeError):
    """A signed release document is malformed or names no package."""

    reason = "release_invalid"
