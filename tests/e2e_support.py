"""Shared types of the end-to-end tests (imported by name: keep this module name unique)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pitahaya.client_runtime import Limits, RuntimeConfig, Scene, View
from pitahaya.packaging import BuildResult
from pitahaya.publisher import RegistryClient
from pitahaya.training import TrainResult

#: Devices of the end-to-end tests wait long for a package (tests about timeouts set their own):
#: a busy 2-core CI machine must never turn an honest call into a timeout.
PATIENT_DEVICE = RuntimeConfig(limits=Limits(call_timeout_s=10.0, max_call_timeout_s=10.0))


@dataclass(frozen=True)
class Pipeline:
    """A trained and packaged model from a small generated log."""

    scene: Scene
    views: list[View]
    trained: TrainResult
    built: BuildResult
    tracking_uri: str


@dataclass(frozen=True)
class LiveRegistry:
    url: str
    token: str
    data_dir: Path

    def client(self) -> RegistryClient:
        return RegistryClient(self.url, token=self.token)

    def blob_path(self, sha256: str) -> Path:
        return self.data_dir / "registry" / "blobs" / "sha256" / sha256[:2] / sha256[2:]
