import dataclasses
import json
import shutil

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pitahaya.client_runtime import FEATURES_FILE, MODEL_FILE, SELFTEST_FILE, LoadedPackage, Scene, read_package
from pitahaya.packaging import BudgetError, PackagingError, ParityError
from pitahaya.packaging.parity import PREDICTION_RTOL


@pytest.fixture(scope="module")
def built(fake_run, scene, tmp_path_factory):
    stages = []
    result = fake_run.package(
        scene,
        "1.0.0",
        tmp_path_factory.mktemp("out"),
        register=True,
        progress=lambda stage, fraction: stages.append((stage, fraction, mlflow.is_tracking_uri_set())),
    )
    return result, stages


def test_package_loads_and_self_tests_on_the_client_runtime(built, fake_run, scene):
    result, _ = built
    package = read_package(result.path.read_bytes())
    assert package.sha256 == result.sha256 and package.size_bytes == result.size_bytes
    loaded = LoadedPackage.load(package)  # runs the shipped self-test
    manifest = loaded.manifest
    assert result.path.name == "watch_time-1.0.0.tar.xz"
    assert manifest.feature_names == scene.extractor_class().feature_names
    assert manifest.mlflow == {"run_id": fake_run.run_id, "experiment_id": fake_run.experiment_id}
    assert set(manifest.metrics) == {"test_mae", "test_xauc", "baseline_user_mean_mae", "baseline_user_mean_xauc"}
    assert manifest.policy == scene.policy and manifest.opsets["ai.onnx.ml"] >= 1
    assert scene.batch_feature_source is not None  # build-time code: never in the package
    assert set(manifest.files) == {MODEL_FILE, FEATURES_FILE, SELFTEST_FILE}
    assert len(package.selftest["cases"]) == 8


def test_parity_report_passes_within_tolerance(built):
    report = built[0].parity
    assert report.passed and report.n_rows > 0
    assert report.max_rel_diff <= PREDICTION_RTOL
    assert 0 < report.latency_p50_us <= report.latency_p99_us
    assert "parity PASSED" in report.summary() and report.to_dict()["passed"] is True


def test_onnx_in_package_matches_lightgbm(built, fake_run, sample_features):
    loaded = LoadedPackage.load(read_package(built[0].path.read_bytes()))
    want = fake_run.booster.predict(sample_features)
    point = loaded.infer(sample_features).reshape(len(sample_features), loaded.manifest.outputs)[:, 0]
    np.testing.assert_allclose(point, want, rtol=PREDICTION_RTOL, atol=PREDICTION_RTOL)


def test_progress_reports_every_stage(built):
    stages = [stage for stage, _, _ in built[1]]
    assert list(dict.fromkeys(stages)) == ["download", "convert", "selftest", "parity", "write", "register"]


def test_packaging_leaves_mlflows_process_wide_uri_alone(built):
    assert not any(uri_set for _, _, uri_set in built[1]) and not mlflow.is_tracking_uri_set()


def test_rebuilding_the_same_run_gives_the_same_bytes(built, fake_run, scene, tmp_path):
    again = fake_run.package(scene, "1.0.0", tmp_path)
    assert again.sha256 == built[0].sha256 and again.model_version is None
    assert again.path.read_bytes() == built[0].path.read_bytes()


def test_model_version_is_registered_with_package_tags(built, fake_run):
    result, _ = built
    client = MlflowClient(tracking_uri=fake_run.tracking_uri, registry_uri=fake_run.tracking_uri)
    version = client.get_model_version("watch_time", result.model_version)
    assert version.run_id == fake_run.run_id
    [model] = client.search_logged_models(
        experiment_ids=[fake_run.experiment_id], filter_string=f"source_run_id = '{fake_run.run_id}'"
    )
    assert version.source == model.model_uri  # as mlflow.register_model records it, linked both ways
    assert json.loads(client.get_logged_model(model.model_id).tags["mlflow.modelVersions"]) == [
        {"name": "watch_time", "version": int(result.model_version)}
    ]
    assert version.tags["package.version"] == "1.0.0"
    assert version.tags["package.sha256"] == result.sha256
    assert version.tags["package.size_bytes"] == str(result.size_bytes)
    assert version.tags["parity.rows"] == str(result.parity.n_rows)
    assert float(version.tags["parity.max_rel_diff"]) <= PREDICTION_RTOL
    logged = {a.path for a in client.list_artifacts(fake_run.run_id, "package")}
    assert logged == {"package/watch_time-1.0.0.tar.xz", "package/parity_report.json"}


def test_feature_code_edited_after_training_is_refused(fake_run, scene, tmp_path):
    folder = tmp_path / "watch_time"
    shutil.copytree(scene.path, folder)
    source = (folder / "features.py").read_text()
    edited = source.replace("self.ewm_fast * duration,", "self.ewm_slow * duration,")
    assert edited != source
    (folder / "features.py").write_text(edited)
    out = tmp_path / "out"
    with pytest.raises(ParityError) as caught:
        fake_run.package(Scene.load(folder), "1.0.1", out)
    report = caught.value.report
    assert report.n_feature_mismatches > 0 and set(report.feature_mismatch_counts) == {"expected_watch_s"}
    assert "expected_watch_s" in str(caught.value)
    assert not out.exists()


def test_package_over_the_size_budget_is_refused(fake_run, scene, tmp_path):
    tight = dataclasses.replace(scene, budgets={**scene.budgets, "max_package_bytes": 1_000})
    with pytest.raises(BudgetError, match="over the scene budget"):
        fake_run.package(tight, "1.0.2", tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_package_over_the_decision_cost_budget_is_refused_unless_the_gate_is_overridden(fake_run, scene, tmp_path):
    # No real decision costs less than a hundredth of the yardstick's one-row model run.
    tight = dataclasses.replace(scene, budgets={**scene.budgets, "max_decision_cost": 0.01})
    with pytest.raises(BudgetError, match=r"a decision costs [\d.]+x the latency yardstick") as caught:
        fake_run.package(tight, "1.0.3", tmp_path / "gated")
    report = caught.value.report
    assert report is not None and report.decision_cost == report.latency_p50_us / report.reference_p50_us > 0.01
    assert not (tmp_path / "gated").exists()

    built = fake_run.package(tight, "1.0.3", tmp_path / "overridden", latency_gate=False)
    assert built.path.exists()
    assert len(built.warnings) == 1 and "the latency gate is overridden" in built.warnings[0]


def test_the_report_states_the_decision_cost_and_its_yardstick(built):
    result, _ = built
    report = result.parity
    assert result.warnings == () and report.reference_p50_us > 0
    assert report.decision_cost == report.latency_p50_us / report.reference_p50_us
    assert f"cost {report.decision_cost:.1f}x the yardstick" in report.summary()


def test_an_unknown_budget_is_refused_before_anything_is_built(fake_run, scene, tmp_path):
    stale = dataclasses.replace(scene, budgets={**scene.budgets, "max_p99_decision_us": 2_000})
    with pytest.raises(PackagingError, match="unknown budget max_p99_decision_us"):
        fake_run.package(stale, "1.0.5", tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_budget_refusal_carries_the_parity_figures(fake_run, scene, tmp_path):
    tight = dataclasses.replace(scene, budgets={**scene.budgets, "max_package_bytes": 1_000})
    with pytest.raises(BudgetError) as caught:
        fake_run.package(tight, "1.0.4", tmp_path)
    assert caught.value.report is not None and caught.value.report.passed
