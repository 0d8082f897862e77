"""pitahaya on-device runtime: the contract every other component builds on.

It defines the event schema (`View`, `Candidate`), the feature-extractor interface, the
algorithm package format and release document, and runs packages on devices.

Importing this package is cheap: each public name loads its module on first use (PEP 562), so
a sandboxed worker that only needs the feature-extractor contract and the loader never pays
for the TUF client, and ``from pitahaya.client_runtime import FeatureExtractor`` in a
package's ``features.py`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "ARCHIVE_SUFFIX": "package",
    "BoundInference": "loader",
    "CallError": "errors",
    "CallTimeoutError": "errors",
    "Candidate": "events",
    "ClientRuntimeError": "errors",
    "CompositeHooks": "hooks",
    "ContainedPackage": "containment",
    "Decision": "decisions",
    "FEATURES_FILE": "package",
    "FIXED_BYTES": "policy",
    "FIXED_COUNT": "policy",
    "FeatureCodeError": "errors",
    "FeatureExtractor": "extractor",
    "ISOLATION_MODES": "containment",
    "Hooks": "hooks",
    "InferenceError": "errors",
    "InferenceEvent": "hooks",
    "Isolation": "containment",
    "Limits": "containment",
    "LATENCY_US_BOUNDS": "telemetry",
    "LoadTimeoutError": "errors",
    "LoadedPackage": "loader",
    "LocalArchiveUpdater": "local_updater",
    "MODEL_FILE": "package",
    "Manifest": "package",
    "MetadataExpiredError": "errors",
    "Mode": "state",
    "ModelLoadError": "errors",
    "Package": "package",
    "PackageError": "errors",
    "PackageFormatError": "errors",
    "PackageUpdater": "updater",
    "PARITY_DIR": "parity_set",
    "ParitySet": "parity_set",
    "PolicyKnobs": "policy",
    "PreloadItem": "policy",
    "PreloadPlan": "policy",
    "PreloadPlanner": "policy",
    "Release": "releases",
    "ReleaseError": "errors",
    "ResourceLimitError": "errors",
    "Runtime": "runtime",
    "RuntimeConfig": "config",
    "SELFTEST_FILE": "package",
    "SESSION_GAP_S": "events",
    "SandboxCrashError": "errors",
    "SandboxUnavailableError": "errors",
    "Scene": "scene",
    "SelfTestError": "errors",
    "Targeting": "releases",
    "TelemetryConfig": "telemetry",
    "TelemetryReporter": "telemetry",
    "TensorSpec": "package",
    "UpdateCheck": "updater",
    "UpdateDownloadError": "errors",
    "UpdateError": "errors",
    "UpdateEvent": "hooks",
    "UpdateVerificationError": "errors",
    "Updater": "refresher",
    "VIEW_FIELDS": "events",
    "View": "events",
    "WorkerLostError": "errors",
    "build_archive": "package",
    "file_entry": "package",
    "fixed_plan": "policy",
    "load_feature_code": "extractor",
    "model_plan": "policy",
    "preflight": "containment",
    "read_package": "package",
    "release_target_path": "releases",
    "rollout_bucket": "releases",
    "target_path": "package",
    "validate_scene_name": "package",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
