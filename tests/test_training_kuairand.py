"""Must-show: `pitahaya train` on the real KuaiRand subset beats the user-mean baseline on MAE and XAUC,
and the package built from it answers as well on a device (`pitahaya evaluate`, through the runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app

REPO = Path(__file__).resolve().parents[1]
KUAIRAND = REPO.parent / "shared" / "data" / "kuairand-27k-likehate-subset" / "processed_standard_kcore_15.tsv"

pytestmark = pytest.mark.skipif(not KUAIRAND.is_file(), reason=f"KuaiRand subset not present at {KUAIRAND}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("kuairand")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = CliRunner().invoke(
            app,
            ["train", "--events", str(KUAIRAND), "--adapter", "kuairand", "--data-dir", str(data_dir), "--json"],
        )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), data_dir


def test_train_on_kuairand_beats_the_user_mean_baseline(trained):
    out, _ = trained
    m = out["metrics"]
    for prefix in ("test", "baseline_user_mean", "baseline_global_median"):
        assert 0 < m[f"{prefix}_mae"] and 0 <= m[f"{prefix}_xauc"] <= 1
    assert m["test_mae"] < m["baseline_user_mean_mae"]
    assert m["test_xauc"] > m["baseline_user_mean_xauc"]
    # The README's counts: 7,738 rows of duration 0 (image posts: kept, of unknown length), exact
    # duplicates (116 among the videos, 124 in all), and 5 rows watched > 20x their length.
    assert out["bad_rows"] == {"duplicate": 124, "watch_too_long": 5}
    assert m["rows_read"] == 41_828 and m["test_rows_unknown_length"] == 1_574
    assert Path(out["quarantine_path"]).is_file() and out["run_id"]


def test_the_package_answers_on_a_device_as_training_scored_it(trained, monkeypatch):
    """The time split through the device runtime: every held-out view predicted as it is about to play.

    Before the item figures (no per-video signal) this was MAE 15.19 s, XAUC 0.692 (the issue's
    15.30 / 0.693) on the 6,794 held-out videos; with them 13.51 s / 0.722; with the image posts
    in the log (the held-out period starts a little later) 13.54 s / 0.72 on its 6,766 videos.
    The bounds leave room for another platform's floating point, not for losing the item signal.
    """
    out, data_dir = trained
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    built = runner.invoke(
        app, ["package", "--run", out["run_id"], "--version", "1.0.0", "--data-dir", str(data_dir), "--json"]
    )
    assert built.exit_code == 0, built.output
    package = json.loads(built.stdout)["path"]
    result = runner.invoke(
        app, ["evaluate", "--package", package, "--events", str(KUAIRAND), "--adapter", "kuairand", "--json"]
    )
    assert result.exit_code == 0, result.output
    device = json.loads(result.stdout)
    m = out["metrics"]
    assert device["rows"] == 8_340 and device["fallbacks"] == {}  # the rows training's test_mae scored
    assert device["videos"] == 6_766  # ... of which image posts (no length): 1,574
    assert device["mae"] == pytest.approx(m["test_mae"], abs=0.01)  # float32 ONNX vs LightGBM's float64
    assert device["baseline_user_mean_mae"] == pytest.approx(m["baseline_user_mean_mae"])
    assert device["videos_mae"] <= 13.6 and device["videos_xauc"] >= 0.715
    assert device["mae"] < device["baseline_user_mean_mae"] and device["xauc"] > device["baseline_user_mean_xauc"]
    # the 0.2 / 0.8 quantile heads, as the device answers them, are calibrated on the held-out period
    # (0.221 / 0.791 when written; training scored 0.215 / 0.791: the device clamps a negative
    # prediction to 0 s, which covers the views watched 0 s)
    for level, share in (("q20", 0.2), ("q80", 0.8)):
        assert device["quantiles"][f"coverage_{level}"] == pytest.approx(share, abs=0.03)
        assert device["quantiles"][f"coverage_{level}"] == pytest.approx(m[f"test_coverage_{level}"], abs=0.01)
