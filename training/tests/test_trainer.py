"""A small end-to-end training run: the MLflow run holds what the packager and the UI need."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pitahaya.client_runtime import PARITY_DIR, ParitySet, Scene
from pitahaya.training import (
    GeneratorConfig,
    TrainConfig,
    TrainingError,
    build_matrix,
    generate_views,
    train,
    write_events,
)

SCENE_DIR = Path(__file__).parents[2] / "scenes" / "watch_time"
GENERATOR = GeneratorConfig(n_views=20_000, n_users=100, n_videos=3_000, seed=5)
PARITY_MIN_TEST_ROWS = 1_000


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A throwaway tracking store, named only in each TrainConfig (training never sets MLflow's global URI)."""
    root = tmp_path_factory.mktemp("mlflow")
    return {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": root / "mlartifacts"}


@pytest.fixture
def user_env(store, monkeypatch):
    """MLflow's fluent API pointed at the store the way a user does it: ``MLFLOW_TRACKING_URI``."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["tracking_uri"])


@pytest.fixture(scope="module")
def trained(store):
    """One run; each progress report also records what MLflow's process-wide URI was then."""
    stages = []
    config = TrainConfig(scene=SCENE_DIR, generator=GENERATOR, parity_min_test_rows=PARITY_MIN_TEST_ROWS, **store)
    result = train(config, progress=lambda stage, fraction: stages.append((stage, fraction, _global_uri())))
    return result, stages, mlflow.MlflowClient(store["tracking_uri"])


def _global_uri() -> tuple[bool, str | None]:
    return mlflow.is_tracking_uri_set(), os.environ.get("MLFLOW_TRACKING_URI")


def test_model_beats_the_baselines(trained):
    result, _, _ = trained
    m = result.metrics
    assert m["test_mae"] < 0.8 * m["baseline_user_mean_mae"]
    assert m["test_mae"] < m["baseline_global_median_mae"]
    assert m["test_xauc"] > m["baseline_user_mean_xauc"] + 0.05
    assert m["baseline_global_median_xauc"] == 0.5
    assert result.n_train + result.n_valid + result.n_test == GENERATOR.n_views


def test_progress_reports_every_stage_in_order(trained):
    _, stages, _ = trained
    order = list(dict.fromkeys(stage for stage, _, _ in stages))
    assert order == ["events", "features", "train", "evaluate", "log"]
    assert all(0.0 <= f <= 1.0 for _, f, _ in stages)
    assert all((stage, 1.0) in [(s, f) for s, f, _ in stages] for stage in order)


def test_training_never_sets_mlflows_process_wide_uri(trained):
    """Even while the run is being logged (the "log" reports come from inside it)."""
    _, stages, _ = trained
    assert {uri for _, _, uri in stages} == {_global_uri()} and not mlflow.is_tracking_uri_set()


def test_run_layout(trained, store, user_env):
    result, _, client = trained
    run = client.get_run(result.run_id)
    experiment = client.get_experiment(result.experiment_id)
    assert experiment.name == "watch_time"
    assert experiment.artifact_location == store["artifact_location"].resolve().as_uri()
    for name in (
        "test_mae",
        "test_xauc",
        "best_iteration",
        "baseline_user_mean_mae",
        "baseline_user_mean_xauc",
        "baseline_global_median_mae",
        "baseline_global_median_xauc",
    ):
        assert run.data.metrics[name] == pytest.approx(result.metrics[name])
    assert run.data.params["num_leaves"] == str(Scene.load(SCENE_DIR).training["num_leaves"])
    assert run.data.params["refit"] == "True"
    assert run.data.params["dataset_digest"] == result.dataset_digest
    assert run.data.params["generator.seed"] == "5"
    assert run.data.tags["pitahaya.scene"] == "watch_time"
    assert run.data.tags["pitahaya.model_uri"] == result.model_uri
    assert len(run.data.tags.get("pitahaya.code_version", "0" * 40)) == 40
    assert len(client.get_metric_history(result.run_id, "valid_l1")) >= result.best_iteration
    assert run.inputs.dataset_inputs[0].dataset.digest == result.dataset_digest[:16]
    scene = Scene.load(SCENE_DIR)
    assert mlflow.artifacts.load_text(f"runs:/{result.run_id}/scene/features.py") == scene.feature_source
    assert (
        mlflow.artifacts.load_text(f"runs:/{result.run_id}/scene/scene.toml") == (SCENE_DIR / "scene.toml").read_text()
    )
    importance = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/feature_importance.json")
    assert sorted(importance["data"][i][0] for i in range(len(importance["data"]))) == sorted(result.feature_names)


def test_parity_artifacts_reproduce_training_side(trained, tmp_path, user_env):
    result, _, client = trained
    parity = ParitySet.read(Path(client.download_artifacts(result.run_id, PARITY_DIR, str(tmp_path))))
    views, features, predictions = parity.views, parity.features, parity.outputs[:, 0]  # the point model
    assert len(parity) == result.n_parity_rows
    is_test = np.array([v.start_ts >= result.test_from for v in views])
    assert PARITY_MIN_TEST_ROWS <= is_test.sum() < result.n_test  # a sample of users, not everyone
    # Full streams, in time order per user, every user with test rows.
    assert [(v.user_id, v.start_ts) for v in views] == sorted((v.user_id, v.start_ts) for v in views)
    users = np.array([v.user_id for v in views])
    assert set(users[is_test]) == set(users)
    everything = generate_views(GENERATOR)
    for user in set(users):
        assert sum(users == user) == sum(v.user_id == user for v in everything)
    # The features are the scene's streaming features; the predictions are the logged model's.
    np.testing.assert_array_equal(build_matrix(views, Scene.load(SCENE_DIR).extractor_class()).X, features)
    for uri in (result.model_uri, f"runs:/{result.run_id}/model"):
        booster = mlflow.lightgbm.load_model(uri)
        np.testing.assert_allclose(booster.predict(features), predictions, rtol=1e-6)


def test_same_events_from_a_file_give_the_same_model(trained, store, tmp_path):
    result, _, _ = trained
    events = tmp_path / "events.jsonl.gz"
    write_events(events, generate_views(GENERATOR))
    again = train(TrainConfig(scene=SCENE_DIR, events=events, parity_min_test_rows=PARITY_MIN_TEST_ROWS, **store))
    assert again.experiment_id == result.experiment_id and again.run_id != result.run_id
    assert again.dataset_digest == result.dataset_digest
    assert again.metrics == result.metrics


def test_too_few_events_is_a_training_error(tmp_path, store):
    events = tmp_path / "events.csv"
    write_events(events, generate_views(GeneratorConfig(n_views=2, n_users=1, seed=1)))
    with pytest.raises(TrainingError, match="no valid rows"):
        train(TrainConfig(scene=SCENE_DIR, events=events, **store))


def test_config_rejects_misuse(store):
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(scene=SCENE_DIR, events="x.csv", generator=GENERATOR, **store)
    with pytest.raises(ValueError, match="unsupported model"):
        TrainConfig(scene=SCENE_DIR, model="xgboost", **store)
