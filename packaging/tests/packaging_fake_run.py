"""A tiny training run in a throw-away MLflow store, shaped like the training job's runs.

The packager's tests must not depend on ``pitahaya.training`` (packaging only imports the
client runtime), so this module plays the training job's part of the contract: generate
views, replay them through the scene's extractor, train a small LightGBM, and log the model,
the scene files, test metrics and the parity set the packager checks against (written by the
client runtime's `ParitySet`, as the training job writes it). The run is logged with MLflow's
fluent API, as any MLflow user would, pointed at the store by ``MLFLOW_TRACKING_URI`` for the
duration of the call only.
The model is a LightGBM booster or, with ``flavor="sklearn"``, a scikit-learn
``HistGradientBoostingRegressor`` logged with ``mlflow.sklearn`` and tagged
``pitahaya.model_flavor=sklearn`` as the training job's ``--model sklearn`` does. With
``quantiles``, one quantile-loss head per level is logged beside the model as the training job
lays them out (`pitahaya.client_runtime.QUANTILES_DIR`, `QUANTILES_METADATA`), and the parity
set holds their predictions as further columns. Imported by
name (``packaging_fake_run``) from this folder's conftest and from the root CLI tests.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from typing import Any

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import mlflow.sklearn
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from pitahaya.client_runtime import PARITY_DIR, QUANTILES_DIR, QUANTILES_METADATA, ParitySet, Scene, View
from pitahaya.packaging import BuildResult, build_package

#: Small enough for a 2-core machine, large enough to exercise every feature branch.
N_USERS = 24
VIEWS_PER_USER = 60
N_TREES = 30
TEST_USER_SHARE = 0.25
SKOPS_TREE_TYPE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def generate_views(seed: int = 7, n_users: int = N_USERS, views_per_user: int = VIEWS_PER_USER) -> list[View]:
    """Views of users switching between fast swiping and careful watching, time-ordered per user."""
    rng = np.random.default_rng(seed)
    views: list[View] = []
    for u in range(n_users):
        ts = 1_700_000_000.0 + float(rng.uniform(0, 86_400))
        careful = bool(rng.random() < 0.5)
        for v in range(views_per_user):
            if rng.random() < 0.1:
                careful = not careful
            duration = float(np.round(rng.lognormal(3.0, 0.7), 3)) + 1.0
            ratio = rng.beta(4, 2) * 1.3 if careful else rng.beta(1, 6)
            watch = float(np.round(duration * ratio, 3))
            size = int(duration * rng.uniform(60_000, 250_000))
            views.append(View(f"u{u:03d}", f"v{u:03d}_{v:03d}", ts, duration, watch, size))
            gap = 4_000.0 if rng.random() < 0.05 else float(rng.exponential(2.0))
            ts = round(ts + watch + gap, 3)
    return views


def replay_features(scene: Scene, views: Sequence[View]) -> np.ndarray:
    """One row per view: its features as a candidate at its start, from earlier views only."""
    extractor_class = scene.extractor_class()
    rows = np.empty((len(views), len(extractor_class.feature_names)), dtype=np.float32)
    extractors = {}
    for i, view in enumerate(views):
        extractor = extractors.setdefault(view.user_id, extractor_class())
        extractor.transform([view.as_candidate()], view.start_ts, rows[i : i + 1])
        extractor.update(view)
    return rows


@dataclass(frozen=True)
class FakeRun:
    run_id: str
    experiment_id: str
    tracking_uri: str
    model: Any

    @property
    def booster(self) -> lgb.Booster:
        assert isinstance(self.model, lgb.Booster), "not a LightGBM run"
        return self.model

    def package(self, scene: Scene, version: str, out_dir: Path, **options: Any) -> BuildResult:
        """Package this run's model; not registered in MLflow unless ``register=True`` is passed."""
        options.setdefault("register", False)
        return build_package(
            run_id=self.run_id, scene=scene, version=version, tracking_uri=self.tracking_uri, out_dir=out_dir, **options
        )


def _fit(
    flavor: str, features: np.ndarray, target: np.ndarray, names: list[str], seed: int, quantile: float | None = None
) -> Any:
    """The point model (L1) or, with ``quantile``, a head at that level."""
    if flavor == "sklearn":
        model = HistGradientBoostingRegressor(
            loss="absolute_error" if quantile is None else "quantile",
            quantile=quantile,
            max_iter=N_TREES,
            max_leaf_nodes=15,
            min_samples_leaf=10,
            early_stopping=False,
            random_state=seed,
        )
        return model.fit(features, target)
    params = {
        "objective": "regression_l1",
        "num_leaves": 15,
        "min_data_in_leaf": 10,
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
    }
    if quantile is not None:
        params.update(objective="quantile", alpha=quantile)
    return lgb.train(params, lgb.Dataset(features, target, feature_name=names), num_boost_round=N_TREES)


def log_fake_run(
    scene: Scene,
    tracking_uri: str,
    *,
    seed: int = 7,
    flavor: str = "lightgbm",
    quantiles: Sequence[float] | None = None,
) -> FakeRun:
    """Train on the scene's features and log a run the way the training job does (``tracking_uri``: a
    ``sqlite:///`` store; the experiment keeps its artifacts beside it); ``quantiles``: the
    levels of the heads, by default the scene's."""
    quantiles = scene.quantiles if quantiles is None else quantiles
    views = generate_views(seed)
    features = replay_features(scene, views)
    target = np.array([v.watch_s for v in views])
    users = sorted({v.user_id for v in views})
    test_users = set(users[: max(1, int(len(users) * TEST_USER_SHARE))])
    is_test = np.array([v.user_id in test_users for v in views])
    names = list(scene.extractor_class().feature_names)
    model = _fit(flavor, features[~is_test], target[~is_test], names, seed)
    heads = [_fit(flavor, features[~is_test], target[~is_test], names, seed, level) for level in quantiles]
    parity_views = [v for v in views if v.user_id in test_users]
    parity_rows = is_test.nonzero()[0]
    predictions = model.predict(features[parity_rows]).astype(np.float32)
    mae = float(np.mean(np.abs(predictions - target[parity_rows])))
    if heads:
        predictions = np.stack([predictions, *(h.predict(features[parity_rows]) for h in heads)], axis=1)
        predictions = predictions.astype(np.float32)

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(scene.name)
    # Artifacts beside the SQLite store: MLflow's default is ./mlruns in whatever folder the tests run from.
    artifacts = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(scene.name, artifacts)
    with (
        pytest.MonkeyPatch.context() as env,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            metadata = {QUANTILES_METADATA: list(quantiles)} if quantiles else None
            # Requirements named, not inferred: inferring them costs ~14 s per model here.
            options: dict[str, Any] = {"pip_requirements": [flavor]}
            if flavor == "sklearn":
                # MLflow 3 saves with skops, which must be told the tree type is safe to load.
                options["skops_trusted_types"] = [SKOPS_TREE_TYPE]
                info = mlflow.sklearn.log_model(model, name="model", metadata=metadata, **options)
                mlflow.set_tag("pitahaya.model_flavor", "sklearn")
            else:
                info = mlflow.lightgbm.log_model(model, name="model", metadata=metadata, **options)
            if heads:
                save = mlflow.sklearn.save_model if flavor == "sklearn" else mlflow.lightgbm.save_model
                with tempfile.TemporaryDirectory() as folder:
                    for level, head in zip(quantiles, heads, strict=True):
                        save(head, str(Path(folder) / QUANTILES_DIR / repr(level)), **options)
                    mlflow.MlflowClient(tracking_uri).log_model_artifacts(info.model_id, folder)
            mlflow.log_metrics(
                {
                    "test_mae": mae,
                    "test_xauc": 0.7,
                    "baseline_user_mean_mae": mae * 1.2,
                    "baseline_user_mean_xauc": 0.6,
                }
            )
            ParitySet(parity_views, features[parity_rows], predictions).write(Path(tmp))
            mlflow.log_artifacts(tmp, artifact_path=PARITY_DIR)
            for name in ("features.py", "scene.toml"):
                mlflow.log_artifact(str(scene.path / name), artifact_path="scene")
    return FakeRun(run.info.run_id, experiment_id, tracking_uri, model)
