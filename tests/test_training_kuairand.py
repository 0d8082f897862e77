"""Must-show: `pitahaya train` on the real KuaiRand subset beats the user-mean baseline on MAE and XAUC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app

REPO = Path(__file__).resolve().parents[1]
KUAIRAND = REPO.parent / "shared" / "data" / "kuairand-27k-likehate-subset" / "processed_standard_kcore_15.tsv"

pytestmark = pytest.mark.skipif(not KUAIRAND.is_file(), reason=f"KuaiRand subset not present at {KUAIRAND}")


def test_train_on_kuairand_beats_the_user_mean_baseline(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(
        app,
        ["train", "--events", str(KUAIRAND), "--adapter", "kuairand", "--data-dir", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    m = out["metrics"]
    for prefix in ("test", "baseline_user_mean", "baseline_global_median"):
        assert 0 < m[f"{prefix}_mae"] and 0 <= m[f"{prefix}_xauc"] <= 1
    assert m["test_mae"] < m["baseline_user_mean_mae"]
    assert m["test_xauc"] > m["baseline_user_mean_xauc"]
    # The README's own counts: 7,738 rows of duration 0, 116 exact duplicates.
    assert out["bad_rows"]["zero_duration"] == 7_738 and out["bad_rows"]["duplicate"] == 116
    assert m["rows_read"] == 41_828
    assert Path(out["quarantine_path"]).is_file() and out["run_id"]
