"""Packaging a model with quantile heads: one ONNX output per level, each held by the parity gate."""

import dataclasses

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from pitahaya.client_runtime import LoadedPackage, Scene, read_package
from pitahaya.packaging import ConversionError, convert_lightgbm
from pitahaya.packaging.convert import inference_session
from pitahaya.packaging.parity import check_parity

from packaging_fake_run import FakeRun, generate_views, log_fake_run, replay_features

LEVELS = (0.2, 0.8)


@pytest.fixture(scope="module", params=["lightgbm", "sklearn"])
def quantile_run(request: pytest.FixtureRequest, scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> FakeRun:
    store = tmp_path_factory.mktemp(f"mlflow-quantiles-{request.param}")
    return log_fake_run(scene, f"sqlite:///{store}/mlflow.db", flavor=request.param, quantiles=LEVELS)


@pytest.fixture(scope="module")
def quantile_scene(scene: Scene) -> Scene:
    return dataclasses.replace(scene, quantiles=LEVELS, policy={**scene.policy, "preload_quantile": 0.2})


def test_a_model_with_heads_ships_one_output_per_level_and_passes_parity_on_each(
    quantile_run: FakeRun, quantile_scene: Scene, sample_features: np.ndarray, tmp_path
) -> None:
    result = quantile_run.package(quantile_scene, "1.0.0", tmp_path)
    manifest = result.manifest
    assert manifest.quantiles == LEVELS and manifest.output.shape == (None, 3)
    assert result.parity.passed and result.parity.n_rows > 0
    loaded = LoadedPackage.load(read_package(result.path.read_bytes()))  # its self-test holds all three columns
    outputs = loaded.infer(sample_features).reshape(-1, 3)
    # the heads bracket the point on average: the columns are the heads, in level order
    low, point, high = outputs[:, 1].mean(), outputs[:, 0].mean(), outputs[:, 2].mean()
    assert low < point < high


def test_the_gate_names_the_quantile_column_that_differs(
    quantile_run: FakeRun, quantile_scene: Scene, tmp_path
) -> None:
    result = quantile_run.package(quantile_scene, "1.0.0", tmp_path)
    loaded = LoadedPackage.load(read_package(result.path.read_bytes()))
    everyone = generate_views()
    views = [v for v in everyone if v.user_id == everyone[0].user_id]
    features = replay_features(quantile_scene, views)
    expected = loaded.infer(features).reshape(-1, 3).copy()
    assert check_parity(loaded, views, features, expected).passed
    expected[5, 2] += 1.0  # the 0.8 head of row 5 off by a second
    report = check_parity(loaded, views, features, expected)
    assert not report.passed and report.n_prediction_mismatches == 1
    assert [(m.row, m.column) for m in report.worst] == [(5, "q0.8")]
    with pytest.raises(Exception, match=r"expected \(\d+, \d+\) and \(\d+, 3\)"):
        check_parity(loaded, views, features, expected[:, 0])  # a point-only set for a model with heads


def test_a_policy_sizing_by_a_level_the_model_lacks_is_refused(quantile_run: FakeRun, scene: Scene, tmp_path) -> None:
    lacking = dataclasses.replace(scene, policy={**scene.policy, "buffer_quantile": 0.5})
    with pytest.raises(
        ConversionError, match=r"buffer_quantile 0.5 is not one of the model's quantile levels \[0.2, 0.8\]"
    ):
        quantile_run.package(lacking, "1.0.0", tmp_path)


def test_a_head_on_other_features_is_refused(fake_run: FakeRun, sample_features: np.ndarray) -> None:
    other = lgb.train(
        {"verbose": -1, "objective": "quantile", "alpha": 0.2},
        lgb.Dataset(sample_features[:, :3], sample_features[:, 0]),
        3,
    )
    with pytest.raises(ConversionError, match="a head takes 3 features"):
        convert_lightgbm(fake_run.booster, heads=[other])
    with pytest.raises(ConversionError, match="convert them compact"):
        convert_lightgbm(fake_run.booster, heads=[fake_run.booster], compact=False)


def test_each_head_is_its_own_tree_ensemble_on_the_shared_input(fake_run: FakeRun, sample_features: np.ndarray) -> None:
    """One graph, one ``TreeEnsemble`` per output and a ``Concat``: ONNX Runtime runs that faster
    than one multi-target ensemble (benchmarks/README.md)."""
    heads = [
        lgb.train(
            {"verbose": -1, "objective": "quantile", "alpha": level},
            lgb.Dataset(sample_features, sample_features[:, 0]),
            5,
        )
        for level in LEVELS
    ]
    converted = convert_lightgbm(fake_run.booster, heads=heads)
    graph = onnx.load_from_string(converted.model_bytes).graph
    assert [node.op_type for node in graph.node].count("TreeEnsemble") == 3
    assert graph.node[-1].op_type == "Concat" and [i.name for i in graph.input] == ["features"]
    outputs = inference_session(converted.model_bytes).run(None, {"features": sample_features})[0]
    expected = np.stack([b.predict(sample_features) for b in (fake_run.booster, *heads)], axis=1)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-4)
