"""The MLflow monitoring view as a person sees it: headless Chromium screenshots of the real UI.

Production's path end to end: a real ``mlflow server`` (SQLite store) on 127.0.0.1, a real
registry process forwarding to it (`TelemetryForwarder`, every second here), and devices'
telemetry sent by the client runtime's own reporter for two package versions over the last
minutes. Once the runs hold their per-minute points, Chromium (Debian package ``chromium``)
takes two screenshots and dumps the DOM of the same pages:

- the ``watch_time-monitoring`` experiment in chart view (both runs, a chart per metric);
- the ``watch_time-1.0.0`` run's overview (tags and the metrics table).

The PNGs are kept under pytest's tmp dir (the path is printed; run with ``-s`` to see it).
Without a ``chromium`` binary the test skips, except under ``CI=true`` where it fails:
``.ci/run`` installs the package.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from fleet_feed import client_token, feed_fleet
from pitahaya.cli._server import child_server, free_port, registry_process
from servers import unavailable

VERSIONS = ("1.0.0", "1.1.0")
MINUTES = 8
#: Shown on every chart/table a person opens first; the forwarder's names (telemetry_export).
METRICS = ("success_rate", "latency_us_p99", "uv")
#: The shared 2-core machine can take minutes to start MLflow and the registry.
STARTUP_S = 400.0
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        unavailable(RuntimeError("no 'chromium' binary (Debian: apt-get install chromium)"))
    return str(binary)


def _chromium_run(binary: str, profile: Path, url: str, *action: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1600,1000",
        "--virtual-time-budget=20000", *action, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)


def png_colours(path: Path) -> int:
    """Distinct colours of a PNG (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", image.format
        return len(image.convert("RGB").getcolors(maxcolors=1 << 24) or ())


def _wait_for_runs(client: mlflow.MlflowClient, deadline_s: float) -> tuple[str, dict[str, str]]:
    """The experiment id and run name -> id, once every version's run holds all its minutes."""
    deadline = time.monotonic() + deadline_s
    while True:
        experiment = client.get_experiment_by_name("watch_time-monitoring")
        if experiment is not None:
            runs = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment.experiment_id])}
            if set(runs) == {f"watch_time-{v}" for v in VERSIONS} and all(
                len(client.get_metric_history(run_id, "success_rate")) >= MINUTES for run_id in runs.values()
            ):
                return experiment.experiment_id, runs
        if time.monotonic() > deadline:
            raise AssertionError(f"the forwarder did not deliver {MINUTES} minutes per version in {deadline_s:.0f} s")
        time.sleep(0.5)


@pytest.mark.e2e
def test_the_monitoring_experiment_renders_in_the_mlflow_ui(tmp_path: Path) -> None:
    chromium = _chromium()
    started = time.monotonic()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_server = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-destination", str(tmp_path / "artifacts"),
    ]  # fmt: skip
    with child_server(
        mlflow_server,
        ready_url=f"{uri}/health",
        log_path=tmp_path / "mlflow.log",
        env=QUIET,
        startup_timeout_s=STARTUP_S,
    ):
        token = secrets.token_urlsafe(24)
        forwarding = {"PITAHAYA_MLFLOW_TRACKING_URI": uri, "PITAHAYA_TELEMETRY_FORWARD_INTERVAL_SECONDS": "1", **QUIET}
        with registry_process(tmp_path / "registry", token, env=forwarding, startup_timeout_s=STARTUP_S) as url:
            sent = feed_fleet(url, client_token(url, token), versions=VERSIONS, devices=3, minutes=MINUTES)
            assert sent == 3 * len(VERSIONS)
            experiment_id, runs = _wait_for_runs(mlflow.MlflowClient(uri), STARTUP_S)
        servers_s = time.monotonic() - started

        pages = {
            "experiment-charts": f"{uri}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART",
            "run-overview": f"{uri}/#/experiments/{experiment_id}/runs/{runs['watch_time-1.0.0']}",
        }
        shots: dict[str, Path] = {}
        doms: dict[str, str] = {}
        for name, page in pages.items():
            shots[name] = tmp_path / f"mlflow-{name}.png"
            _chromium_run(chromium, tmp_path / f"profile-{name}", page, f"--screenshot={shots[name]}")
            doms[name] = _chromium_run(chromium, tmp_path / f"profile-{name}-dom", page, "--dump-dom").stdout
    print(f"\nMLflow monitoring screenshots: {' '.join(str(p) for p in shots.values())}")
    print(f"servers and forwarding {servers_s:.0f} s, browser {time.monotonic() - started - servers_s:.0f} s")

    for name, path in shots.items():
        assert path.stat().st_size > 20_000, name
        # A rendered page has text, charts and anti-aliasing: thousands of colours; a blank one, a few.
        assert png_colours(path) > 500, name
    charts, overview = doms["experiment-charts"], doms["run-overview"]
    assert all(f"watch_time-{v}" in charts for v in VERSIONS)
    assert "watch_time-monitoring" in charts
    assert "watch_time-1.0.0" in overview and "pitahaya.package_version" in overview
    for metric in METRICS:
        assert f">{metric}<" in overview, metric
