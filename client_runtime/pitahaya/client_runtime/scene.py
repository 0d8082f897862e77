"""A scene on disk: ``scene.toml`` plus the code it names.

Training and packaging both start from a scene folder (``scenes/<name>/``); devices never
see one, they get the same feature code from inside a verified package. ``[scene]`` names
the streaming feature code (``features``, default ``features.py``: it ships to devices) and,
optionally, its vectorized twin for training (``batch_features``: build-time code, never
packaged). Both load the same way: executed from their text into fresh modules that are
never registered in ``sys.modules``.
"""

from __future__ import annotations

import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pitahaya.client_runtime.extractor import EXTRACTOR_CLASS, FeatureExtractor, load_code, load_feature_module
from pitahaya.client_runtime.package import validate_quantiles, validate_scene_name
from pitahaya.client_runtime.policy import PolicyKnobs


@dataclass(frozen=True)
class Scene:
    """A scene's config and feature code.

    Attributes:
        name: Scene name (also the MLflow experiment name).
        path: Folder the scene was loaded from.
        feature_source: Text of the scene's ``features.py``.
        batch_feature_source: Text of the scene's batch feature module, or None when
            ``scene.toml`` names none (training then replays the streaming extractor).
        target: Name of the predicted quantity (``watch_s``).
        quantiles: Levels (strictly increasing, in (0, 1)) of the target's quantiles the model
            predicts beside its point prediction (``[scene] quantiles``; empty: the point only).
            Training fits one head per level, the package's model outputs them as columns
            after the point, and the device's plan may size its decisions by one of them.
        policy: Decision knobs shipped in package manifests.
        budgets: Limits the packager enforces (``max_package_bytes``, ``max_decision_cost``).
        training: Default training hyper-parameters.
    """

    name: str
    path: Path
    feature_source: str
    target: str = "watch_s"
    quantiles: tuple[float, ...] = ()
    description: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    batch_feature_source: str | None = None

    def feature_module(self) -> types.ModuleType:
        """Load the scene's ``features.py`` exactly as a device would (its ``Extractor`` checked)."""
        return load_feature_module(self.feature_source, name=f"{self.name}_features")

    def extractor_class(self) -> type[FeatureExtractor]:
        """Load the scene's ``Extractor`` class exactly as a device would."""
        extractor: type[FeatureExtractor] = getattr(self.feature_module(), EXTRACTOR_CLASS)
        return extractor

    def batch_module(self) -> types.ModuleType | None:
        """Load the scene's batch feature module like ``features.py``; None when it has none.

        Raises:
            FeatureCodeError: the module fails to compile or import.
        """
        if self.batch_feature_source is None:
            return None
        return load_code(self.batch_feature_source, name=f"{self.name}_batch_features", file="the batch feature module")

    @classmethod
    def load(cls, path: str | Path) -> Scene:
        """Load ``scene.toml`` and its feature code from a scene folder.

        Raises:
            FileNotFoundError: the folder, ``scene.toml`` or a file it names is missing.
            ValueError: ``scene.toml`` is malformed, or its ``[policy]`` is one no device takes
                (a knob out of range, or naming a quantile level the scene does not predict).
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
        batch_path = folder / meta["batch_features"] if "batch_features" in meta else None
        quantiles = _quantiles(meta.get("quantiles", []), config_path)
        policy = dict(config.get("policy", {}))
        try:  # knobs naming a quantile level the scene's model does not predict: say so now, not at packaging
            PolicyKnobs.from_policy(policy, quantiles)
        except (TypeError, ValueError, ArithmeticError) as e:
            raise ValueError(f"{config_path}: [policy]: {e}") from e
        return cls(
            name=validate_scene_name(meta["name"]),
            path=folder,
            feature_source=features_path.read_text(),
            target=meta.get("target", "watch_s"),
            quantiles=quantiles,
            description=meta.get("description", ""),
            policy=policy,
            budgets=dict(config.get("budgets", {})),
            training=dict(config.get("training", {})),
            batch_feature_source=batch_path.read_text() if batch_path else None,
        )


def _quantiles(value: Any, config_path: Path) -> tuple[float, ...]:
    """``[scene] quantiles`` checked (`validate_quantiles`); the error names the file."""
    try:
        return validate_quantiles(value)
    except ValueError as e:
        raise ValueError(f"{config_path}: [scene] quantiles: {e}") from e
