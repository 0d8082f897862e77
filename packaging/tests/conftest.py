"""Fixtures: the repo's scene and tiny LightGBM / scikit-learn training runs (see `packaging_fake_run`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pitahaya.client_runtime import Scene

from packaging_fake_run import FakeRun, generate_views, log_fake_run, replay_features

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def scene() -> Scene:
    return Scene.load(REPO / "scenes" / "watch_time")


@pytest.fixture(scope="session")
def fake_run(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> FakeRun:
    store = tmp_path_factory.mktemp("mlflow")
    return log_fake_run(scene, f"sqlite:///{store}/mlflow.db")


@pytest.fixture(scope="session")
def sklearn_run(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> FakeRun:
    store = tmp_path_factory.mktemp("mlflow-sklearn")
    return log_fake_run(scene, f"sqlite:///{store}/mlflow.db", flavor="sklearn")


@pytest.fixture(scope="session")
def sample_features(scene: Scene) -> np.ndarray:
    """Feature rows of views the fake run's model never saw."""
    return replay_features(scene, generate_views(seed=3, n_users=8))
