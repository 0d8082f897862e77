"""pitahaya on-device runtime: the contract every other component builds on.

It defines the event schema (`View`, `Candidate`), the feature-extractor interface, the
algorithm package format and release document, and runs packages on devices.
"""

from pitahaya.client_runtime.containment import ContainedPackage, Isolation, Limits, preflight
from pitahaya.client_runtime.errors import (
    CallError,
    CallTimeoutError,
    ClientRuntimeError,
    FeatureCodeError,
    InferenceError,
    LoadTimeoutError,
    MetadataExpiredError,
    ModelLoadError,
    PackageError,
    PackageFormatError,
    ReleaseError,
    ResourceLimitError,
    SandboxCrashError,
    SelfTestError,
    UpdateDownloadError,
    UpdateError,
    UpdateVerificationError,
    WorkerLostError,
)
from pitahaya.client_runtime.events import VIEW_FIELDS, Candidate, View
from pitahaya.client_runtime.extractor import FeatureExtractor, load_feature_code
from pitahaya.client_runtime.hooks import Hooks, InferenceEvent, UpdateEvent
from pitahaya.client_runtime.loader import BoundInference, LoadedPackage
from pitahaya.client_runtime.local_updater import LocalArchiveUpdater
from pitahaya.client_runtime.package import (
    ARCHIVE_SUFFIX,
    FEATURES_FILE,
    MODEL_FILE,
    SELFTEST_FILE,
    Manifest,
    Package,
    TensorSpec,
    build_archive,
    file_entry,
    read_package,
    target_path,
)
from pitahaya.client_runtime.policy import (
    PolicyKnobs,
    PreloadItem,
    PreloadPlan,
    PreloadPlanner,
    fixed_plan,
    model_plan,
)
from pitahaya.client_runtime.releases import Release, Targeting, release_target_path, rollout_bucket
from pitahaya.client_runtime.runtime import Decision, Runtime, RuntimeConfig, Updater
from pitahaya.client_runtime.scene import Scene
from pitahaya.client_runtime.state import Mode
from pitahaya.client_runtime.telemetry import TelemetryReporter
from pitahaya.client_runtime.updater import PackageUpdater, UpdateCheck

__all__ = [
    "ARCHIVE_SUFFIX",
    "BoundInference",
    "CallError",
    "CallTimeoutError",
    "Candidate",
    "ClientRuntimeError",
    "ContainedPackage",
    "Decision",
    "FEATURES_FILE",
    "FeatureCodeError",
    "FeatureExtractor",
    "Hooks",
    "InferenceError",
    "InferenceEvent",
    "Isolation",
    "Limits",
    "LoadTimeoutError",
    "LoadedPackage",
    "LocalArchiveUpdater",
    "MODEL_FILE",
    "Manifest",
    "MetadataExpiredError",
    "Mode",
    "ModelLoadError",
    "Package",
    "PackageError",
    "PackageFormatError",
    "PackageUpdater",
    "PolicyKnobs",
    "PreloadItem",
    "PreloadPlan",
    "PreloadPlanner",
    "Release",
    "ReleaseError",
    "ResourceLimitError",
    "Runtime",
    "RuntimeConfig",
    "SELFTEST_FILE",
    "SandboxCrashError",
    "Scene",
    "SelfTestError",
    "Targeting",
    "TelemetryReporter",
    "TensorSpec",
    "UpdateCheck",
    "UpdateDownloadError",
    "UpdateError",
    "UpdateEvent",
    "UpdateVerificationError",
    "Updater",
    "VIEW_FIELDS",
    "View",
    "WorkerLostError",
    "build_archive",
    "file_entry",
    "fixed_plan",
    "load_feature_code",
    "model_plan",
    "preflight",
    "read_package",
    "release_target_path",
    "rollout_bucket",
    "target_path",
]
