"""The public API of pitahaya.client_runtime is pinned: it grows only on purpose."""

import pitahaya.client_runtime as client_runtime

PUBLIC = [
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


def test_public_api_is_pinned_and_sorted() -> None:
    assert client_runtime.__all__ == PUBLIC
    assert sorted(PUBLIC) == PUBLIC
    for name in PUBLIC:
        assert getattr(client_runtime, name) is not None
