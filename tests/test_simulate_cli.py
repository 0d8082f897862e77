"""``pitahaya simulate`` end to end: a trained, packaged model replayed against fixed and the oracle.

The command module's own Typer app is invoked, so the test does not depend on how the root app
mounts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from pitahaya.cli.commands.simulate import app
from pitahaya.simulation import TRACE_CLASSES

from e2e_support import LiveRegistry, Pipeline

runner = CliRunner()


def test_help_names_every_source_and_knob() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--sessions", "--network", "--bitrate-bps", "--package", "--registry", "--margin", "--json"):
        assert option in result.output


def test_model_oracle_and_fixed_replay_generated_sessions(pipeline: Pipeline, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "--package", str(pipeline.built.path),
            "--max-sessions", "4",
            "--margin", "0.75",
            "--data-dir", str(tmp_path),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sessions"] == 4
    assert summary["classes"] == list(TRACE_CLASSES)
    for policy in ("fixed", "oracle", "oracle plan", "model"):
        assert set(summary["policies"][policy]) == {"overall", *TRACE_CLASSES}
        assert summary["policies"][policy]["overall"]["total_bytes"]["total"] > 0
    oracle = summary["versus_fixed"]["oracle"]["overall"]["total bandwidth"]
    assert oracle["policy"] < oracle["fixed"] and oracle["change"] < 0
    assert {(r["policy"], r["margin"]) for r in summary["frontier"]} == {
        (p, m) for p in ("oracle", "oracle plan", "model") for m in (0.75, 1.0)
    }
    # the truth through the device's planner saves, but less than the oracle (the plan's shape)
    planned = summary["versus_fixed"]["oracle plan"]["overall"]["total bandwidth"]["change"]
    assert oracle["change"] < planned < 0
    assert summary["runtime"]["model_decisions"] > 0  # the package really ran in the client runtime

    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["sessions_source"] == "generated"
    assert run.data.metrics["oracle_total_bytes_change"] == pytest.approx(oracle["change"])
    assert run.data.metrics["oracle_plan_total_bytes_change"] == pytest.approx(planned)
    assert run.data.metrics["model_total_bytes_change_ci_low"] <= run.data.metrics["model_total_bytes_change"]


@pytest.mark.e2e
def test_the_model_can_come_from_a_running_registry(
    pipeline: Pipeline, live_registry: LiveRegistry, tmp_path: Path
) -> None:
    client = live_registry.client()
    client.push(pipeline.built.path.read_bytes())
    client.create_release("watch_time", "1.0.0")
    root = tmp_path / "root.json"
    root.write_bytes(client.root_metadata())
    args = ["--registry", live_registry.url, "--max-sessions", "2", "--data-dir", str(tmp_path), "--json"]
    result = runner.invoke(app, [*args, "--trusted-root", str(root)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["runtime"]["model_decisions"] == summary["runtime"]["decisions"] > 0
    assert set(summary["versus_fixed"]) == {"oracle", "oracle plan", "model"}

    other = tmp_path / "other-root.json"
    other.write_bytes(b"{}")
    refused = runner.invoke(app, [*args, "--trusted-root", str(other)])
    assert refused.exit_code == 1 and "error:" in refused.output, refused.output


def test_bad_input_is_a_one_line_error(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["--package", str(tmp_path / "nope.tar.xz"), "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "error: no package archive" in missing.output
    no_root = runner.invoke(app, ["--registry", "http://127.0.0.1:9", "--data-dir", str(tmp_path)])
    assert no_root.exit_code == 1 and "--trusted-root" in no_root.output
    no_data = runner.invoke(app, ["--network", "mmgc", "--datasets", str(tmp_path), "--data-dir", str(tmp_path)])
    assert no_data.exit_code == 1 and "no MMGC traces" in no_data.output
    assert "Traceback" not in missing.output + no_root.output + no_data.output
