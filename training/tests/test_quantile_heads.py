"""Quantile heads: a scene with ``quantiles`` trains one head per level beside the point model.

One small run per case, shared by the tests of this module: LightGBM with the heads (refit on the
train and valid rows), scikit-learn with the heads (no refit: fit on the train rows only), and
LightGBM on a scene without quantiles. The Dask engine's heads are checked in
``test_dask_engine.py``, beside the local run it is compared with (a cluster start is costly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.models import Model
from pitahaya.client_runtime import PARITY_DIR, ParitySet
from pitahaya.training import GeneratorConfig, TrainConfig, TrainResult, train
from pitahaya.training.evaluation import level_name, quantile_metrics
from pitahaya.client_runtime import QUANTILES_DIR, QUANTILES_METADATA
from pitahaya.training.models import load_heads
from scene_copies import scene_with_quantiles

LEVELS = (0.2, 0.8)
GENERATOR = GeneratorConfig(n_views=8_000, n_users=60, n_videos=2_000, seed=8)


@dataclass
class Run:
    """One training run and what it left in MLflow."""

    result: TrainResult
    params: dict[str, str]
    metrics: dict[str, float]
    parity: ParitySet
    model_folder: Path

    @property
    def test_rows(self) -> np.ndarray:
        """Mask of the parity rows in the test period."""
        return np.array([v.start_ts >= self.result.test_from for v in self.parity.views])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("mlflow-quantiles")
    return {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": root / "artifacts"}


def _train(store: dict[str, Any], folder: Path, levels: tuple[float, ...], **options: Any) -> Run:
    """Train on the generated log with ``levels``; read back the run, its parity set and model folder."""
    config = TrainConfig(
        scene=scene_with_quantiles(folder / "scene", levels),
        generator=GENERATOR,
        features="batch",
        params={"n_estimators": 80},
        parity_min_test_rows=300,
        num_threads=1,  # small data: a second thread only waits (and spins) on a busy 2-core runner
        **store,
        **options,
    )
    result = train(config)
    client = mlflow.MlflowClient(store["tracking_uri"])
    run = client.get_run(result.run_id)
    location = client.get_logged_model(result.model_uri.removeprefix("models:/")).artifact_location
    model_folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(folder / "model")))
    parity = ParitySet.read(Path(client.download_artifacts(result.run_id, PARITY_DIR, str(folder))))
    return Run(result, dict(run.data.params), dict(run.data.metrics), parity, model_folder)


@pytest.fixture(scope="module")
def lightgbm_run(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(store, tmp_path_factory.mktemp("lightgbm"), LEVELS)


@pytest.fixture(scope="module")
def sklearn_run(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(store, tmp_path_factory.mktemp("sklearn"), LEVELS, model="sklearn", refit=False)


@pytest.fixture(scope="module")
def point_run(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _train(store, tmp_path_factory.mktemp("point"), ())


@pytest.fixture(params=["lightgbm_run", "sklearn_run"])
def quantile_run(request: pytest.FixtureRequest) -> Run:
    return request.getfixturevalue(request.param)


def test_level_names_are_the_percent_without_trailing_zeros() -> None:
    assert [level_name(q) for q in (0.2, 0.25, 0.125, 0.07, 0.5, 0.999)] == [
        "q20",
        "q25",
        "q12.5",
        "q7",
        "q50",
        "q99.9",
    ]


def test_quantile_metrics_by_hand() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    heads = np.array([[0.0, 2.0], [2.0, 3.0], [4.0, 3.5], [1.0, 5.0]])  # row 2 crosses
    m = quantile_metrics(y, heads, (0.2, 0.8))
    # pinball at 0.2: under-predictions cost 0.2 per second, over-predictions 0.8
    assert m["test_pinball_q20"] == pytest.approx((0.2 * 1 + 0 + 0.8 * 1 + 0.2 * 3) / 4)
    assert m["test_pinball_q80"] == pytest.approx((0.2 * 1 + 0.2 * 1 + 0.2 * 0.5 + 0.2 * 1) / 4)
    assert m["test_coverage_q20"] == 0.5 and m["test_coverage_q80"] == 1.0
    assert m["test_quantile_crossing"] == 0.25


def test_parity_set_has_one_column_per_output(quantile_run: Run) -> None:
    assert quantile_run.parity.predictions.shape == (len(quantile_run.parity), 1 + len(LEVELS))
    assert quantile_run.parity.predictions.dtype == np.float32


def test_heads_predict_in_level_order(quantile_run: Run) -> None:
    point, low, high = quantile_run.parity.outputs.mean(axis=0)
    assert low < point < high


def test_run_logs_calibrated_heads(quantile_run: Run) -> None:
    m = quantile_run.metrics
    assert quantile_run.params["quantiles"] == "0.2,0.8"
    for level in LEVELS:
        assert m[f"test_pinball_{level_name(level)}"] > 0
        assert m[f"test_coverage_{level_name(level)}"] == pytest.approx(level, abs=0.1)
        assert (
            quantile_run.result.metrics[f"test_coverage_{level_name(level)}"] == m[f"test_coverage_{level_name(level)}"]
        )
    assert m["test_quantile_crossing"] <= 0.05


def test_each_head_beats_the_point_model_at_its_level(quantile_run: Run) -> None:
    test = quantile_run.test_rows
    y = np.array([v.watch_s for v in quantile_run.parity.views])[test]
    outputs = quantile_run.parity.outputs[test].astype(np.float64)
    heads = quantile_metrics(y, outputs[:, 1:], LEVELS)
    point = quantile_metrics(y, outputs[:, [0] * len(LEVELS)], LEVELS)
    for level in LEVELS:
        assert heads[f"test_pinball_{level_name(level)}"] < point[f"test_pinball_{level_name(level)}"]


def test_model_folder_holds_the_heads_that_load_back(quantile_run: Run) -> None:
    folder = quantile_run.model_folder
    assert Model.load(folder).metadata == {QUANTILES_METADATA: list(LEVELS)}
    assert sorted(p.name for p in (folder / QUANTILES_DIR).iterdir()) == ["0.2", "0.8"]
    heads = load_heads(folder)
    assert [level for level, _ in heads] == list(LEVELS)
    flavor = mlflow.lightgbm if quantile_run.result.model_flavor == "lightgbm" else mlflow.sklearn
    point = flavor.load_model(str(folder))
    features = quantile_run.parity.features
    loaded = np.column_stack([point.predict(features), *(head.predict(features) for _, head in heads)])
    np.testing.assert_array_equal(loaded.astype(np.float32), quantile_run.parity.outputs)


def test_scene_without_quantiles_is_unchanged(point_run: Run) -> None:
    assert point_run.parity.predictions.shape == (len(point_run.parity),)
    assert not [name for name in point_run.metrics if "pinball" in name or "coverage" in name or "quantile" in name]
    assert "quantiles" not in point_run.params
    assert Model.load(point_run.model_folder).metadata is None
    assert not (point_run.model_folder / QUANTILES_DIR).exists()
    assert load_heads(point_run.model_folder) == ()
