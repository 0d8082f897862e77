"""`pitahaya package` refusals as an ML engineer sees them: exit 1, a readable report, no traceback."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app
from pitahaya.client_runtime import Scene

from packaging_fake_run import FakeRun, log_fake_run

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def run(data_dir: Path, monkeypatch_module: pytest.MonkeyPatch) -> FakeRun:
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    return log_fake_run(Scene.load(REPO / "scenes" / "watch_time"), f"sqlite:///{data_dir.resolve() / 'mlflow.db'}")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def edited_scene(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "watch_time"
    shutil.copytree(REPO / "scenes" / "watch_time", folder)
    source = (folder / "features.py").read_text()
    assert old in source
    (folder / "features.py").write_text(source.replace(old, new, 1))
    return folder


def test_parity_refusal_prints_the_report(run: FakeRun, data_dir: Path, tmp_path: Path) -> None:
    scene = edited_scene(tmp_path, "self.ewm_fast * duration,", "self.ewm_slow * duration,")
    args = ["package", "--run", run.run_id, "--scene", str(scene), "--data-dir", str(data_dir), "--no-register"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    out = text(result)
    assert "parity FAILED" in out and "expected_watch_s" in out and "the parity gate refused the package" in out
    # Not a terminal: each stage is a line as it starts and ends, not a display drawn once at exit.
    assert re.search(r"download: started download: done in [\d.]+ s convert: started", out)
    assert "Traceback" not in result.output
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)["parity"]
    assert report["passed"] is False and report["feature_mismatch_counts"].keys() == {"expected_watch_s"}
    assert report["worst"][0]["column"] == "expected_watch_s"


def test_lint_refusal_names_file_and_line(run: FakeRun, data_dir: Path, tmp_path: Path) -> None:
    scene = edited_scene(tmp_path, "import math\n", "import math\nimport os\n")
    result = runner.invoke(app, ["package", "--run", run.run_id, "--scene", str(scene), "--data-dir", str(data_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = (scene / "features.py").read_text().splitlines().index("import os") + 1
    assert f"{scene / 'features.py'}:{line}:1: import of 'os' is not allowed" in text(result)


def test_run_and_model_uri_are_exclusive(data_dir: Path) -> None:
    for extra in ([], ["--run", "x", "--model-uri", "models:/watch_time/1"]):
        result = runner.invoke(app, ["package", *extra, "--data-dir", str(data_dir)])
        assert result.exit_code == 1 and "exactly one of --run" in text(result)


def test_a_passing_build_reports_its_tuf_target_and_opsets(run: FakeRun, data_dir: Path, tmp_path: Path) -> None:
    args = ["package", "--run", run.run_id, "--version", "1.2.3", "--out", str(tmp_path), "--data-dir", str(data_dir)]
    result = runner.invoke(app, [*args, "--no-register", "--json"])
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    archive = Path(built["path"]).read_bytes()
    assert built["tuf_target"] == {
        "path": "packages/watch_time/watch_time-1.2.3.tar.xz",
        "length": len(archive),
        "hashes": {"sha256": hashlib.sha256(archive).hexdigest()},
    }
    assert built["opsets"] == {"": 21, "ai.onnx.ml": 5} and built["parity"]["passed"] is True


def test_the_latency_gate_refuses_a_costly_package_and_its_override_warns(
    run: FakeRun, data_dir: Path, tmp_path: Path
) -> None:
    scene = tmp_path / "watch_time"
    shutil.copytree(REPO / "scenes" / "watch_time", scene)
    toml = scene / "scene.toml"
    toml.write_text(re.sub(r"max_decision_cost = \S+", "max_decision_cost = 0.01", toml.read_text()))
    args = ["package", "--run", run.run_id, "--scene", str(scene), "--data-dir", str(data_dir), "--no-register"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "gated")])
    assert refused.exit_code == 1 and "x the latency yardstick" in text(refused) and "override" in text(refused)
    assert not (tmp_path / "gated").exists()
    built = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--no-latency-gate", "--json"])
    assert built.exit_code == 0, built.output
    (warning,) = json.loads(built.stdout)["warnings"]
    assert "the latency gate is overridden" in warning
