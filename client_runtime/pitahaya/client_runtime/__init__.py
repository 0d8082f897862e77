"""pitahaya on-device runtime: the contract every other component builds on.

It defines the event schema (`View`, `Candidate`), the feature-extractor interface, the
algorithm package format and release document, and runs packages on devices.
"""

from pitahaya.client_runtime.errors import (
    ClientRuntimeError,
    FeatureCodeError,
    MetadataExpiredError,
    ModelLoadError,
    PackageError,
    PackageFormatError,
    ReleaseError,
    SelfTestError,
    UpdateDownloadError,
    UpdateError,
    UpdateVerificationError,
)
from pitahaya.client_runtime.events import VIEW_FIELDS, Candidate, View
from pitahaya.client_runtime.extractor import FeatureExtractor, load_feature_code
from pitahaya.client_runtime.hooks import Hooks, InferenceEvent, UpdateEvent
from pitahaya.client_runtime.loader import BoundInference, LoadedPackage
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
from pitahaya.client_runtime.runtime import Decision, Runtime, RuntimeConfig
from pitahaya.client_runtime.scene import Scene
from pitahaya.client_runtime.telemetry import TelemetryReporter
from pitahaya.client_runtime.updater import PackageUpdater, UpdateCheck

__all__ = [
    "ARCHIVE_SUFFIX",
    "BoundInference",
    "Candidate",
    "ClientRuntimeError",
    "Decision",
    "FEATURES_FILE",
    "FeatureCodeError",
    "FeatureExtractor",
    "Hooks",
    "InferenceEvent",
    "LoadedPackage",
    "MODEL_FILE",
    "Manifest",
    "MetadataExpiredError",
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
    "Runtime",
    "RuntimeConfig",
    "SELFTEST_FILE",
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
    "VIEW_FIELDS",
    "View",
    "build_archive",
    "file_entry",
    "fixed_plan",
    "load_feature_code",
    "model_plan",
    "read_package",
    "release_target_path",
    "rollout_bucket",
    "target_path",
]
