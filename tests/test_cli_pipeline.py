"""The pipeline driven through the CLI, as an ML engineer would: train -> package -> push -> release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app

from e2e_support import LiveRegistry

pytestmark = pytest.mark.e2e
runner = CliRunner()


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_package_push_release(live_registry: LiveRegistry, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    trained = invoke_json("train", "--views", "20000", "--seed", "5", "--data-dir", data)
    assert trained["metrics"]["test_mae"] < trained["metrics"]["baseline_user_mean_mae"]
    built = invoke_json("package", "--run", trained["run_id"], "--version", "2.0.0", "--data-dir", data)
    assert built["parity"]["n_prediction_mismatches"] == 0 and Path(built["path"]).exists()
    registry = ["--registry", live_registry.url, "--token", live_registry.token]
    pushed = invoke_json("push", built["path"], *registry)
    assert (pushed["version"], pushed["sha256"]) == ("2.0.0", built["sha256"])
    released = invoke_json("release", "watch_time", "2.0.0", "--percent", "25", *registry)
    assert released["package_version"] == "2.0.0" and released["rollout_percent"] == 25

    gate = tmp_path / "gate.toml"
    gate.write_text('preset = "fast"\nsteps = [10, 100]\non_fail = "rollback"\n[margins]\nmae_relative = 0.3\n')
    gated = invoke_json("release", "watch_time", "2.0.0", "--gate", str(gate), *registry)
    assert gated["rollout_percent"] == 10 and gated["earlier"][0]["rollout_percent"] == 25
    status = invoke_json("rollout", "status", "watch_time", *registry)
    assert status["release_id"] == gated["release_id"]
    assert (status["gate"]["state"], status["gate"]["steps"], status["gate"]["spec"]["on_fail"]) == (
        "observing",
        [10, 100],
        "rollback",
    )
    shown = runner.invoke(app, ["rollout", "status", "watch_time", *registry])
    assert shown.exit_code == 0 and "observing" in shown.output, shown.output
    unknown = runner.invoke(app, ["release", "watch_time", "2.0.0", "--gate", "no-such-preset", *registry])
    assert unknown.exit_code == 1 and "not a preset" in unknown.output


def test_push_with_a_wrong_token_fails_cleanly(live_registry: LiveRegistry, tmp_path: Path) -> None:
    archive = tmp_path / "x.tar.xz"
    archive.write_bytes(b"not a package")
    result = runner.invoke(app, ["push", str(archive), "--registry", live_registry.url, "--token", "wrong" * 4])
    assert result.exit_code == 1
    assert "error:" in result.output and "401" in result.output
    assert "Traceback" not in result.output


def test_package_of_an_unknown_run_fails_cleanly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["package", "--run", "0" * 32, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
