"""Training on a Dask LocalCluster (2 workers, 1 thread each) reaches the local metrics, quantile heads included."""

from __future__ import annotations

import pytest
from pitahaya.training import GeneratorConfig, TrainConfig, train
from pitahaya.training.distributed import early_stopping_point
from pitahaya.training.evaluation import level_name
from scene_copies import scene_with_quantiles

LEVELS = (0.2, 0.8)
GENERATOR = GeneratorConfig(n_views=12_000, n_users=80, n_videos=2_000, seed=13)


def test_local_and_dask_training_agree(tmp_path):
    common = {
        "scene": scene_with_quantiles(tmp_path / "scene", LEVELS),
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "artifact_location": tmp_path / "artifacts",
        "generator": GENERATOR,
        "features": "batch",
        "params": {"n_estimators": 80},
        "parity_min_test_rows": 500,
    }
    local = train(TrainConfig(**common))
    distributed = train(TrainConfig(**common, engine="dask"))
    assert distributed.features_path == "dask-batch"
    assert distributed.dataset_digest == local.dataset_digest  # workers computed the very same features
    for name in ("test_mae", "baseline_user_mean_mae"):
        assert distributed.metrics[name] == pytest.approx(local.metrics[name], rel=0.03)
    assert distributed.metrics["test_xauc"] == pytest.approx(local.metrics["test_xauc"], abs=0.01)
    assert distributed.metrics["test_mae"] < distributed.metrics["baseline_user_mean_mae"]
    for level in LEVELS:  # the workers fit the heads too, as calibrated as the local ones
        for metric in (f"test_pinball_{level_name(level)}", f"test_coverage_{level_name(level)}"):
            assert distributed.metrics[metric] == pytest.approx(local.metrics[metric], rel=0.05)


def test_early_stopping_point_follows_lightgbm_rule():
    assert early_stopping_point([5.0, 4.0, 3.0, 3.5, 3.6, 2.0], patience=2) == 3
    assert early_stopping_point([5.0, 4.0, 3.0], patience=5) == 3
