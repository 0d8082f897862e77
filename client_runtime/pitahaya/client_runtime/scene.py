"""A scene on disk: ``scene.toml`` plus the feature code it names.

Training and packaging both start from a scene folder (``scenes/<name>/``); devices never
see one, they get the same feature code from inside a verified package.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitahaya.client_runtime.extractor import FeatureExtractor, load_feature_code
from pitahaya.client_runtime.package import validate_scene_name


@dataclass(frozen=True)
class Scene:
    """A scene's config and feature code.

    Attributes:
        name: Scene name (also the MLflow experiment name).
        path: Folder the scene was loaded from.
        feature_source: Text of the scene's ``features.py``.
        target: Name of the predicted quantity (``watch_s``).
        policy: Decision knobs shipped in package manifests.
        budgets: Limits the packager enforces (``max_package_bytes``, ``max_p99_decision_us``).
        training: Default training hyper-parameters.
    """

    name: str
    path: Path
    feature_source: str
    target: str = "watch_s"
    description: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def extractor_class(self) -> type[FeatureExtractor]:
        """Load the scene's ``Extractor`` class exactly as a device would."""
        return load_feature_code(self.feature_source, name=f"{self.name}_features")

    @classmethod
    def load(cls, path: str | Path) -> Scene:
        """Load ``scene.toml`` and its feature code from a scene folder.

        Raises:
            FileNotFoundError: the folder, ``scene.toml`` or the feature file is missing.
            ValueError: ``scene.toml`` is malformed.
        """
        folder = Path(path)
        config_path = folder / "scene.toml"
        try:
            config = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{config_path}: {e}") from e
        meta = config.get("scene", {})
        if "name" not in meta:
            raise ValueError(f"{config_path}: [scene] needs a name")
        features_path = folder / meta.get("features", "features.py")
        return cls(
            name=validate_scene_name(meta["name"]),
            path=folder,
            feature_source=features_path.read_text(),
            target=meta.get("target", "watch_s"),
            description=meta.get("description", ""),
            policy=dict(config.get("policy", {})),
            budgets=dict(config.get("budgets", {})),
            training=dict(config.get("training", {})),
        )
