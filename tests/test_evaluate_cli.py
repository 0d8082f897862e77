"""`pitahaya evaluate`: a built package replayed through the device runtime on a log's held-out period."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app
from pitahaya.training import write_events

from e2e_support import Pipeline

runner = CliRunner()


def test_the_device_answers_what_training_scored(pipeline: Pipeline, tmp_path: Path) -> None:
    events = tmp_path / "events.csv.gz"
    write_events(events, pipeline.views)
    result = runner.invoke(app, ["evaluate", "--package", str(pipeline.built.path), "--events", str(events), "--json"])
    assert result.exit_code == 0, result.output
    device = json.loads(result.stdout)  # stdout holds only the JSON
    metrics = pipeline.trained.metrics
    assert device["rows"] == pipeline.trained.n_test and device["fallbacks"] == {}
    assert device["test_from"] == pytest.approx(pipeline.trained.test_from)
    # the same rows and features: only float32 ONNX against LightGBM's float64 differs
    assert device["mae"] == pytest.approx(metrics["test_mae"], abs=0.01)
    assert device["xauc"] == pytest.approx(metrics["test_xauc"], abs=0.002)
    assert device["baseline_user_mean_mae"] == pytest.approx(metrics["baseline_user_mean_mae"])
    assert device["version"] == "1.0.0"
    # the scene's quantile heads, as the runtime answered them (sorted): the same coverage training logged
    for level in ("q20", "q80"):
        assert device["quantiles"][f"coverage_{level}"] == pytest.approx(metrics[f"test_coverage_{level}"], abs=0.002)
        assert device["quantiles"][f"pinball_{level}"] == pytest.approx(metrics[f"test_pinball_{level}"], abs=0.01)
    assert device["quantiles"]["quantile_crossing"] == 0.0


def test_a_file_that_is_not_a_package_is_a_clear_error(pipeline: Pipeline, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    write_events(events, pipeline.views[:200])
    fake = tmp_path / "package.tar.xz"
    fake.write_bytes(b"not an archive")
    result = runner.invoke(app, ["evaluate", "--package", str(fake), "--events", str(events)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    missing = runner.invoke(app, ["evaluate", "--package", str(tmp_path / "nope.tar.xz"), "--events", str(events)])
    assert missing.exit_code == 1 and "nope.tar.xz" in " ".join(missing.output.split())
