"""`log_simulation`: a handful of headline metrics, the full result as tables, plots as artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from pitahaya.training import GeneratorConfig, generate_views, held_out_from
from pitahaya.simulation import (
    SimulationConfig,
    at_bitrate,
    generated_sessions,
    generated_traces,
    log_simulation,
    simulate,
)


def test_a_simulation_run_holds_headline_metrics_tables_and_plots(tmp_path: Path) -> None:
    views = generate_views(GeneratorConfig(n_views=2_000, n_users=30, seed=3))
    sessions = at_bitrate(generated_sessions(views, test_from=held_out_from(views), max_users=6, seed=1), 1_000_000)
    networks = {c: generated_traces(c, 2, seed=2, samples=600) for c in ("medium", "low")}
    result = simulate(sessions, networks, config=SimulationConfig(margins=(0.75, 1.0)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    run_id = log_simulation(result, tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # No model here: the oracle's changes carry the CI bounds; the oracle plan's come without.
    oracle = result.summary["versus_fixed"]["oracle"]["overall"]
    planned = result.summary["versus_fixed"]["oracle plan"]["overall"]
    figures = (("preload_bytes", "preload bandwidth"), ("total_bytes", "total bandwidth"),
               ("stall_time", "stall time"), ("slow_starts", "slow starts"))  # fmt: skip
    expected = (
        {"sessions", "views"}
        | {
            f"oracle_{stem}_change{suffix}"
            for stem, label in figures
            if oracle[label]["change"] is not None
            for suffix in ("", "_ci_low", "_ci_high")
        }
        | {f"oracle_plan_{stem}_change" for stem, label in figures if planned[label]["change"] is not None}
    )
    assert set(run.data.metrics) == expected and len(expected) <= 20
    assert run.data.metrics["oracle_total_bytes_change"] == oracle["total bandwidth"]["change"]
    assert run.data.metrics["sessions"] == len(sessions)
    assert run.data.params["sessions_source"] == "generated" and run.data.params["margins"] == "0.75,1"

    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "tables")
    }
    assert {"frontier.png", "versus_fixed.png", "table.txt", "summary.json"} <= artifacts
    assert {"tables/versus_fixed.json", "tables/policies.json", "tables/frontier.json"} <= artifacts
    folder = Path(client.download_artifacts(run_id, "", str(tmp_path / "down")))
    for png in ("frontier.png", "versus_fixed.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads((folder / "tables" / "versus_fixed.json").read_text())
    columns = table["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in table["data"]]
    # Every figure of the seed's table, per policy and trace class, is in the table.
    assert len(rows) == 2 * 3 * 4  # (oracle, oracle plan) x (overall, medium, low) x 4 figures
    overall = next(r for r in rows if r["trace_class"] == "overall" and r["figure"] == "total bandwidth")
    assert overall["change"] == pytest.approx(oracle["total bandwidth"]["change"], rel=1e-8)  # JSON keeps 10 digits
