"""Where a package's model comes from: a run (LightGBM or scikit-learn) or a registered model version."""

import os

import mlflow
import numpy as np
import onnx
import pytest
from mlflow import MlflowClient

from pitahaya.client_runtime import LoadedPackage, read_package
from pitahaya.packaging import (
    ConversionError,
    PackagingError,
    build_package,
    convert_sklearn,
)
from pitahaya.packaging.builder import _registry_store_tracking_uri
from pitahaya.packaging.convert import (
    INPUT_NAME,
    OUTPUT_NAME,
    inference_session,
    snap_sklearn_thresholds_to_float32,
)
from pitahaya.packaging.parity import PREDICTION_RTOL


def test_sklearn_thresholds_snapped_to_float32_keep_every_prediction(sklearn_run, sample_features):
    snapped = snap_sklearn_thresholds_to_float32(sklearn_run.model)
    np.testing.assert_array_equal(snapped.predict(sample_features), sklearn_run.model.predict(sample_features))


def test_sklearn_model_converts_to_a_compact_onnx_that_matches(sklearn_run, sample_features):
    converted = convert_sklearn(sklearn_run.model)
    model = onnx.load_from_string(converted.model_bytes)
    assert [n.op_type for n in model.graph.node] == [
        "TreeEnsemble",
        "Add",
    ]  # Add carries the baseline
    assert converted.opsets == {"": 21, "ai.onnx.ml": 5}
    (got,) = inference_session(converted.model_bytes).run([OUTPUT_NAME], {INPUT_NAME: sample_features})
    np.testing.assert_allclose(
        got.reshape(-1),
        sklearn_run.model.predict(sample_features),
        rtol=PREDICTION_RTOL,
        atol=PREDICTION_RTOL,
    )
    assert convert_sklearn(sklearn_run.model).model_bytes == converted.model_bytes


def test_other_sklearn_models_are_refused():
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(np.eye(3), np.arange(3.0))
    with pytest.raises(ConversionError, match="HistGradientBoostingRegressor"):
        convert_sklearn(model)


def test_sklearn_run_packages_and_passes_parity(sklearn_run, scene, tmp_path):
    result = sklearn_run.package(scene, "1.0.0", tmp_path)
    assert result.parity.passed and result.parity.max_rel_diff <= PREDICTION_RTOL
    assert result.manifest.opsets["ai.onnx.ml"] == 5
    loaded = LoadedPackage.load(read_package(result.path.read_bytes()))
    assert loaded.manifest.mlflow["run_id"] == sklearn_run.run_id


def _register(run, name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the run's model the way an MLflow user does (``MLFLOW_TRACKING_URI`` set)."""
    client = MlflowClient(tracking_uri=run.tracking_uri, registry_uri=run.tracking_uri)
    logged = client.search_logged_models(
        experiment_ids=[run.experiment_id],
        filter_string=f"source_run_id = '{run.run_id}'",
    )
    with monkeypatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", run.tracking_uri)
        version = mlflow.register_model(logged[0].model_uri, name).version
    return str(version)


@pytest.mark.parametrize("by_alias", [False, True])
def test_a_registered_version_of_the_scene_model_is_packaged_and_tagged(
    sklearn_run, scene, tmp_path, by_alias, monkeypatch
):
    number = _register(sklearn_run, scene.name, monkeypatch)
    client = MlflowClient(tracking_uri=sklearn_run.tracking_uri, registry_uri=sklearn_run.tracking_uri)
    uri = f"models:/{scene.name}/{number}"
    if by_alias:
        client.set_registered_model_alias(scene.name, "candidate", number)
        uri = f"models:/{scene.name}@candidate"
    result = build_package(
        model_uri=uri,
        scene=scene,
        version="1.1.0",
        tracking_uri=sklearn_run.tracking_uri,
        out_dir=tmp_path,
    )
    assert result.model_version == number  # tagged in place, not registered again
    version = client.get_model_version(scene.name, number)
    assert version.tags["package.sha256"] == result.sha256 and version.tags["package.version"] == "1.1.0"
    assert result.manifest.mlflow["run_id"] == sklearn_run.run_id


def test_a_model_uri_of_another_form_is_refused(fake_run, scene, tmp_path):
    with pytest.raises(PackagingError, match="models:/NAME/VERSION or models:/NAME@alias"):
        build_package(
            model_uri=f"runs:/{fake_run.run_id}/model",
            scene=scene,
            version="1.0.0",
            tracking_uri=fake_run.tracking_uri,
            out_dir=tmp_path,
        )


def test_an_unknown_model_version_is_a_packaging_error(fake_run, scene, tmp_path):
    with pytest.raises(PackagingError, match="MLflow failed while packaging models:/watch_time/999"):
        build_package(
            model_uri="models:/watch_time/999",
            scene=scene,
            version="1.0.0",
            tracking_uri=fake_run.tracking_uri,
            out_dir=tmp_path,
        )


@pytest.mark.parametrize("user_uri", [None, "sqlite:///elsewhere.db"])
def test_registering_leaves_mlflows_tracking_uri_as_it_was(user_uri, monkeypatch, tmp_path):
    """The one scoped change (see `_registry_store_tracking_uri`) is undone, whatever the user had."""
    if user_uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", user_uri)
    before = mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri()
    inside = f"sqlite:///{tmp_path}/mlflow.db"
    with _registry_store_tracking_uri(inside):
        assert mlflow.get_tracking_uri() == inside
    assert (mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri()) == before
    assert os.environ.get("MLFLOW_TRACKING_URI") == user_uri
