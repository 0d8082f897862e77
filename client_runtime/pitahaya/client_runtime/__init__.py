"""pitahaya on-device runtime: the contract every other component builds on.

It defines the event schema (`View`, `Candidate`), the feature-extractor interface, the
algorithm package format and release document, and runs packages on devices.
"""

from pitahaya.client_runtime.errors import (
    ClientRuntimeError,
    FeatureCodeError,
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
from pitahaya.client_runtime.package import Manifest, Package, TensorSpec, build_archive, read_package
from pitahaya.client_runtime.releases import Release, rollout_bucket
from pitahaya.client_runtime.scene import Scene

__all__ = [
    "VIEW_FIELDS",
    "Candidate",
    "ClientRuntimeError",
    "FeatureCodeError",
    "FeatureExtractor",
    "Manifest",
    "ModelLoadError",
    "Package",
    "PackageError",
    "PackageFormatError",
    "Release",
    "ReleaseError",
    "Scene",
    "SelfTestError",
    "TensorSpec",
    "UpdateDownloadError",
    "UpdateError",
    "UpdateVerificationError",
    "View",
    "build_archive",
    "load_feature_code",
    "read_package",
    "rollout_bucket",
]
