"""Training options: a log with bad rows, the scikit-learn model, the run's evaluation artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pitahaya.client_runtime import PARITY_DIR, ParitySet, Scene
from pitahaya.training import (
    GeneratorConfig,
    TrainConfig,
    ViewTable,
    build_matrix,
    generate_views,
    mae,
    split_by_time,
    train,
    write_events,
)
from pitahaya.training.fitting import fit_model

SCENE_DIR = Path(__file__).parents[2] / "scenes" / "watch_time"
VIEWS = generate_views(GeneratorConfig(n_views=10_000, n_users=60, n_videos=2_000, seed=8))
#: Rows appended to a good log: each reason with its count.
BAD = {
    "missing_field": ["u00001,,1699990000.0,20.0,3.0,5000"] * 2,
    "unparsable_time": ["u00001,v1,soon,20.0,3.0,5000"],
    "negative_duration": ["u00002,v1,1699990000.0,-4.0,3.0,5000"] * 3,
    "watch_too_long": ["u00003,v1,1699990000.0,2.0,41.0,5000"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-options")
    return {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": root / "artifacts", "root": root}


@pytest.fixture(scope="module")
def dirty_run(store):
    """LightGBM on a log with mixed bad rows (and duplicated good ones)."""
    log = store["root"] / "dirty.csv"
    write_events(log, VIEWS)
    extra = [row for rows in BAD.values() for row in rows]
    duplicated = log.read_text().splitlines()[1:6]
    log.write_text(log.read_text() + "\n".join(extra + duplicated) + "\n")
    quarantine = store["root"] / "quarantine.jsonl"
    config = TrainConfig(
        scene=SCENE_DIR,
        tracking_uri=store["tracking_uri"],
        artifact_location=store["artifact_location"],
        events=log,
        quarantine_path=quarantine,
        params={"n_estimators": 80},
        parity_min_test_rows=500,
    )
    return train(config), quarantine


def test_bad_rows_are_reported_and_the_good_ones_trained_on(dirty_run, store):
    result, quarantine = dirty_run
    expected = {reason: len(rows) for reason, rows in BAD.items()} | {"duplicate": 5}
    assert result.bad_rows == expected
    assert result.n_train + result.n_valid + result.n_test == len(VIEWS)
    assert result.metrics["rows_read"] == len(VIEWS) + sum(expected.values())
    assert result.metrics["bad_rows"] == sum(expected.values())
    assert result.metrics["bad_rows_negative_duration"] == 3
    reasons = [json.loads(line)["reason"] for line in quarantine.read_text().splitlines()]
    assert sorted(reasons) == sorted(r for r, n in expected.items() for _ in range(n))
    client = mlflow.MlflowClient(store["tracking_uri"])
    assert [a.path for a in client.list_artifacts(result.run_id, "quarantine")] == ["quarantine/quarantine.jsonl"]


def test_run_holds_plots_dataset_segments_and_preload_effect(dirty_run, store):
    result, _ = dirty_run
    client = mlflow.MlflowClient(store["tracking_uri"])
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    scene_files = {a.path for a in client.list_artifacts(result.run_id, "scene")}
    assert scene_files == {"scene/features.py", "scene/scene.toml", "scene/batch_features.py"}
    assert plots == {"plots/feature_importance.png", "plots/predicted_vs_actual.png"}
    for path in plots:
        local = client.download_artifacts(result.run_id, path, str(store["root"]))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = client.get_run(result.run_id)
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == result.dataset_digest[:16]
    assert run.data.tags["pitahaya.model_flavor"] == "lightgbm"
    assert run.data.tags["pitahaya.features_path"] == result.features_path == "stream"  # small log: auto streams
    m = result.metrics
    for prefix in ("test", "baseline_user_mean", "baseline_global_median"):
        for segment in ("short_video", "long_video", "new_user", "old_user"):
            assert np.isfinite(m[f"{prefix}_mae_{segment}"])
    assert m["test_rows_short_video"] + m["test_rows_long_video"] == result.n_test
    # The fixed policy preloads up to 800 KB of each upcoming video; the model preloads less
    # of the videos users swipe away, so it wastes less.
    assert 0 < m["preload_mb_model"] < m["preload_mb_fixed"]
    assert m["preload_wasted_mb_model"] < m["preload_wasted_mb_fixed"]


def test_sklearn_model_is_logged_with_its_flavor_and_a_scene_without_batch_module_streams(store, tmp_path, monkeypatch):
    scene = tmp_path / "scene"
    shutil.copytree(SCENE_DIR, scene)
    toml = (scene / "scene.toml").read_text()
    (scene / "scene.toml").write_text(toml.replace('batch_features = "batch_features.py"\n', ""))
    config = TrainConfig(
        scene=scene,
        tracking_uri=store["tracking_uri"],
        artifact_location=store["artifact_location"],
        generator=GeneratorConfig(n_views=10_000, n_users=60, n_videos=2_000, seed=8),
        model="sklearn",
        params={"n_estimators": 80},
        parity_min_test_rows=500,
        batch_min_rows=0,  # a scene with a batch module would take the batch path
    )
    result = train(config)
    m = result.metrics
    assert result.model_flavor == "sklearn" and result.features_path == "stream"
    assert m["test_mae"] < m["baseline_user_mean_mae"] and m["test_xauc"] > m["baseline_user_mean_xauc"]
    client = mlflow.MlflowClient(store["tracking_uri"])
    run = client.get_run(result.run_id)
    assert run.data.tags["pitahaya.model_flavor"] == "sklearn"
    leaves = str(Scene.load(SCENE_DIR).training["num_leaves"])
    assert run.data.params["loss"] == "absolute_error" and run.data.params["max_leaf_nodes"] == leaves
    assert {a.path for a in client.list_artifacts(result.run_id, "scene")} == {"scene/features.py", "scene/scene.toml"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["tracking_uri"])  # as a user loading the model would
    model = mlflow.sklearn.load_model(result.model_uri)
    parity = ParitySet.read(Path(client.download_artifacts(result.run_id, PARITY_DIR, str(tmp_path))))
    np.testing.assert_allclose(model.predict(parity.features), parity.outputs[:, 0], rtol=1e-6)


def test_dask_engine_rejects_sklearn(store):
    with pytest.raises(ValueError, match="lightgbm"):
        TrainConfig(scene=SCENE_DIR, tracking_uri=store["tracking_uri"], model="sklearn", engine="dask")


@pytest.mark.parametrize("family", ["lightgbm", "sklearn"])
def test_the_final_model_is_refit_on_train_and_valid_rows_for_the_early_stopped_rounds(store, family):
    scene = Scene.load(SCENE_DIR)
    dataset = build_matrix(ViewTable.from_views(VIEWS).with_item_stats(), scene.extractor_class())
    split = split_by_time(dataset)
    base = dict(scene=SCENE_DIR, tracking_uri=store["tracking_uri"], model=family, params={"n_estimators": 60})
    early = fit_model(TrainConfig(**base, refit=False), scene, dataset, split, None, None, lambda f: None)
    final = fit_model(TrainConfig(**base), scene, dataset, split, None, None, lambda f: None)
    assert final.refit and not early.refit
    assert final.best_iteration == early.best_iteration and final.valid_curve == early.valid_curve
    rounds = final.model.num_trees() if family == "lightgbm" else final.model.n_iter_
    assert rounds == early.best_iteration  # the rounds early stopping picked, no more

    def valid_mae(fitted):
        return mae(dataset.y[split.valid], fitted.predict(dataset.X[split.valid]))

    assert valid_mae(final) < valid_mae(early)  # it learned the valid rows, which the early-stopped one never saw
