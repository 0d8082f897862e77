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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # each name's type, re-exported; at run time it loads on first use (below)
    from pitahaya.client_runtime.config import RuntimeConfig as RuntimeConfig
    from pitahaya.client_runtime.containment import (
        ContainedPackage as ContainedPackage,
        ISOLATION_MODES as ISOLATION_MODES,
        Isolation as Isolation,
        Limits as Limits,
        preflight as preflight,
    )
    from pitahaya.client_runtime.decisions import Decision as Decision
    from pitahaya.client_runtime.errors import (
        CallError as CallError,
        CallTimeoutError as CallTimeoutError,
        ClientRuntimeError as ClientRuntimeError,
        FeatureCodeError as FeatureCodeError,
        InferenceError as InferenceError,
        LoadTimeoutError as LoadTimeoutError,
        MetadataExpiredError as MetadataExpiredError,
        ModelLoadError as ModelLoadError,
        PackageError as PackageError,
        PackageFormatError as PackageFormatError,
        ReleaseError as ReleaseError,
        ResourceLimitError as ResourceLimitError,
        SandboxCrashError as SandboxCrashError,
        SandboxUnavailableError as SandboxUnavailableError,
        SelfTestError as SelfTestError,
        UpdateDownloadError as UpdateDownloadError,
        UpdateError as UpdateError,
        UpdateVerificationError as UpdateVerificationError,
        WorkerLostError as WorkerLostError,
    )
    from pitahaya.client_runtime.events import (
        Candidate as Candidate,
        SESSION_GAP_S as SESSION_GAP_S,
        VIEW_FIELDS as VIEW_FIELDS,
        View as View,
    )
    from pitahaya.client_runtime.extractor import (
        FeatureExtractor as FeatureExtractor,
        load_feature_code as load_feature_code,
    )
    from pitahaya.client_runtime.hooks import (
        CompositeHooks as CompositeHooks,
        Hooks as Hooks,
        InferenceEvent as InferenceEvent,
        UpdateEvent as UpdateEvent,
    )
    from pitahaya.client_runtime.loader import BoundInference as BoundInference, LoadedPackage as LoadedPackage
    from pitahaya.client_runtime.local_updater import LocalArchiveUpdater as LocalArchiveUpdater
    from pitahaya.client_runtime.package import (
        ARCHIVE_SUFFIX as ARCHIVE_SUFFIX,
        FEATURES_FILE as FEATURES_FILE,
        MODEL_FILE as MODEL_FILE,
        Manifest as Manifest,
        Package as Package,
        SELFTEST_FILE as SELFTEST_FILE,
        TensorSpec as TensorSpec,
        build_archive as build_archive,
        file_entry as file_entry,
        read_package as read_package,
        target_path as target_path,
        validate_scene_name as validate_scene_name,
    )
    from pitahaya.client_runtime.parity_set import PARITY_DIR as PARITY_DIR, ParitySet as ParitySet
    from pitahaya.client_runtime.policy import (
        FIXED_BYTES as FIXED_BYTES,
        FIXED_COUNT as FIXED_COUNT,
        PolicyKnobs as PolicyKnobs,
        PreloadItem as PreloadItem,
        PreloadPlan as PreloadPlan,
        PreloadPlanner as PreloadPlanner,
        fixed_plan as fixed_plan,
        model_plan as model_plan,
    )
    from pitahaya.client_runtime.refresher import Updater as Updater
    from pitahaya.client_runtime.releases import (
        Release as Release,
        Targeting as Targeting,
        release_target_path as release_target_path,
        rollout_bucket as rollout_bucket,
    )
    from pitahaya.client_runtime.runtime import Runtime as Runtime
    from pitahaya.client_runtime.scene import Scene as Scene
    from pitahaya.client_runtime.state import Mode as Mode
    from pitahaya.client_runtime.telemetry import (
        LATENCY_US_BOUNDS as LATENCY_US_BOUNDS,
        TelemetryConfig as TelemetryConfig,
        TelemetryReporter as TelemetryReporter,
    )
    from pitahaya.client_runtime.updater import PackageUpdater as PackageUpdater, UpdateCheck as UpdateCheck


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
