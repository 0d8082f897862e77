"""``pitahaya demo``: the whole pipeline on one machine, end to end, on embedded defaults.

generate events -> train (MLflow) -> package (ONNX + parity gate, MLflow model version)
-> start a real registry on 127.0.0.1 -> push -> release -> one device per held-out user
pulls the package over HTTP through TUF and answers for its user's sessions, reporting its
telemetry to the registry (a client token) -> the registry forwards it to the same MLflow
store (experiment ``<scene>-monitoring``, one run per package version; the demo waits for it
before stopping the registry) -> the preload simulator (`pitahaya.simulation`) plays
those sessions over generated bandwidth traces with the device's plans, the fixed 3 x 800 KB
policy and the oracle -> summary table (and the simulation as an MLflow run).

Every demo run starts a fresh registry and fresh device caches under
``<data-dir>/demo/``; the MLflow store under ``<data-dir>`` accumulates runs.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pitahaya.cli._common import (
    DEFAULT_SCENE,
    artifact_root,
    console,
    emit_json,
    stage_progress,
    tracking_uri,
)
from pitahaya.cli._server import registry_process
from pitahaya.cli.commands.simulate import change_with_ci
from pitahaya.client_runtime.hooks import Hooks, InferenceEvent

#: Every demo file is encoded at this bitrate (the issue's headline setting).
DEMO_BITRATE_BPS = 1_000_000.0


@dataclass(frozen=True)
class DemoConfig:
    """Size and location of a demo run."""

    views: int = 200_000
    devices: int = 24
    seed: int = 7
    data_dir: Path = Path(".pitahaya")
    as_json: bool = False
    version: str = "1.0.0"
    scene_path: Path = DEFAULT_SCENE


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo and print its summary; returns the summary as a dict."""
    from pitahaya.client_runtime import PolicyKnobs, Runtime, Scene, TelemetryConfig
    from pitahaya.packaging import build_package
    from pitahaya.publisher import RegistryClient
    from pitahaya.training import GeneratorConfig, TrainConfig, generate_views, train, write_events
    from pitahaya.simulation import (
        TRACE_CLASSES,
        ModelPolicy,
        SimulationConfig,
        at_bitrate,
        generated_sessions,
        generated_traces,
        log_simulation,
        simulate,
    )

    data_dir = config.data_dir
    work = data_dir / "demo"
    for stale in ("registry", "devices", "packages"):
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    scene = Scene.load(config.scene_path)
    token = secrets.token_urlsafe(24)
    mlflow_uri = tracking_uri(data_dir)

    with stage_progress(config.as_json) as progress:
        progress("generate events", 0.0)
        views = generate_views(GeneratorConfig(n_views=config.views, seed=config.seed))
        events_path = work / "events.csv.gz"
        write_events(events_path, views)
        progress("generate events", 1.0)

        result = train(
            TrainConfig(
                scene=config.scene_path,
                events=events_path,
                tracking_uri=mlflow_uri,
                artifact_location=artifact_root(data_dir),
                seed=config.seed,
            ),
            progress=progress,
        )
        built = build_package(
            run_id=result.run_id,
            scene=scene,
            version=config.version,
            tracking_uri=mlflow_uri,
            out_dir=work / "packages",
            register=True,
            progress=progress,
        )

        forwarding = {
            "PITAHAYA_MLFLOW_TRACKING_URI": mlflow_uri,
            "PITAHAYA_TELEMETRY_FORWARD_INTERVAL_SECONDS": str(_FORWARD_INTERVAL_S),
        }
        with registry_process(work / "registry", token, env=forwarding) as url:
            progress("push + release", 0.0)
            registry = RegistryClient(url, token=token)
            registry.push(built.path.read_bytes())
            registry.create_release(scene.name, config.version, channel="stable", rollout_percent=100.0)
            trusted_root = registry.root_metadata()
            telemetry = TelemetryConfig(token=registry.create_token("demo-devices", "client")["secret"])
            decisions = _Decisions()
            progress("push + release", 1.0)

            sessions = at_bitrate(
                generated_sessions(views, test_from=result.test_from, max_users=config.devices, seed=config.seed),
                DEMO_BITRATE_BPS,
            )
            users = sorted({s.user_id for s in sessions})
            installs: dict[str, int] = {}

            def device(device_id: str) -> Runtime:
                runtime = Runtime(
                    url,
                    scene.name,
                    device_id,
                    cache_dir=work / "devices" / device_id,
                    trusted_root=trusted_root,
                    telemetry=telemetry,  # each device reports; closing it sends its last batch
                    hooks=decisions,  # the demo's own count, beside the reporter
                )
                outcome = runtime.refresh().outcome
                installs[outcome] = installs.get(outcome, 0) + 1
                progress("devices pull + predict", sum(installs.values()) / len(users))
                return runtime

            model = ModelPolicy(device)
            model.predict(sessions)  # every device pulls, answers and reports while the registry runs
            monitoring = _wait_for_monitoring(mlflow_uri, scene.name, config.version, decisions.count)

        progress("simulate playback", 0.0)
        networks = {c: generated_traces(c, seed=config.seed) for c in TRACE_CLASSES}
        simulated = simulate(
            sessions,
            networks,
            model=model,
            # the "oracle plan" row plans as the devices do (true watch times at every level)
            knobs=PolicyKnobs.from_policy(scene.policy, scene.quantiles),
            config=SimulationConfig(margins=(1.0,), seed=config.seed, bitrate_bps=DEMO_BITRATE_BPS),
        )
        simulation_run = log_simulation(simulated, tracking_uri=mlflow_uri, artifact_location=artifact_root(data_dir))
        progress("simulate playback", 1.0)

    summary = _summary(config, result, built, simulated.summary, installs, simulation_run, mlflow_uri)
    summary["monitoring"] = monitoring
    if config.as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return summary


#: How often the demo's registry forwards telemetry to MLflow (the default is 30 s).
_FORWARD_INTERVAL_S = 2.0
#: How long the demo waits for the registry to forward every decision before it stops it anyway.
_FORWARD_WAIT_S = 90.0
#: Latest-minute figures of the monitoring run shown in the summary.
_MONITORING_SHOWN = ("success_rate", "fallback_rate", "latency_us_p50", "latency_us_p99", "mae_s", "uv")


class _Decisions(Hooks):
    """Counts the devices' decisions (what the monitoring run should add up to)."""

    def __init__(self) -> None:
        self.count = 0

    def on_inference(self, event: InferenceEvent) -> None:
        self.count += 1


def _wait_for_monitoring(mlflow_uri: str, scene: str, version: str, expected: int) -> dict[str, Any]:
    """Wait until the registry has forwarded ``expected`` decisions to the version's monitoring run.

    Returns the run as the summary shows it; ``forwarded_inferences`` short of ``expected``
    after `_FORWARD_WAIT_S` says forwarding lags (the registry still flushes when it stops).
    """
    from mlflow import MlflowClient

    from pitahaya.registry.telemetry_export import experiment_name

    client = MlflowClient(tracking_uri=mlflow_uri)
    name = experiment_name(scene)
    found: dict[str, Any] = {
        "experiment": name,
        "run_id": None,
        "minutes": 0,
        "device_decisions": expected,
        "forwarded_inferences": 0,
    }
    deadline = time.monotonic() + _FORWARD_WAIT_S
    while True:
        experiment = client.get_experiment_by_name(name)
        label = f"tags.`pitahaya.package_version` = '{version}'"
        runs = client.search_runs([experiment.experiment_id], filter_string=label) if experiment else []
        if runs:
            run = runs[0]
            newest: dict[int, tuple[int, float]] = {}  # step -> (timestamp, value): a re-logged minute's newest point
            for point in client.get_metric_history(run.info.run_id, "inferences"):
                if point.step not in newest or point.timestamp >= newest[point.step][0]:
                    newest[point.step] = (point.timestamp, point.value)
            found.update(
                run_id=run.info.run_id,
                minutes=len(newest),
                forwarded_inferences=int(sum(value for _, value in newest.values())),
                metrics={k: run.data.metrics[k] for k in _MONITORING_SHOWN if k in run.data.metrics},
            )
            if found["forwarded_inferences"] >= expected:
                return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _summary(
    config: DemoConfig,
    result: Any,
    built: Any,
    simulated: dict[str, Any],
    installs: dict[str, int],
    simulation_run: str,
    mlflow_uri: str,
) -> dict[str, Any]:
    runtime = simulated["runtime"]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return {
        "package": {"version": config.version, "size_bytes": built.size_bytes, "sha256": built.sha256},
        "offline": {k: result.metrics[k] for k in sorted(result.metrics)},
        "devices": {
            "count": sum(installs.values()),
            "update_outcomes": installs,
            "decisions": runtime["decisions"],
            "model_decisions": runtime["model_decisions"],
            "fallback_reasons": runtime["fallback_reasons"],
            "latency_us_mean": runtime["mean_latency_us"],
            "online_mae_s": runtime["online_mae_s"],
        },
        "simulation": {
            "run_id": simulation_run,
            "sessions": simulated["sessions"],
            "views": simulated["views"],
            "bitrate_bps": DEMO_BITRATE_BPS,
            "versus_fixed": {p: rows["overall"] for p, rows in simulated["versus_fixed"].items()},
            "policies": {p: rows["overall"] for p, rows in simulated["policies"].items()},
        },
        "mlflow": {"run_id": result.run_id, "ui_command": f"{mlflow_bin} ui --backend-store-uri {mlflow_uri}"},
    }


def _print_summary(summary: dict[str, Any]) -> None:
    off, dev, pkg = summary["offline"], summary["devices"], summary["package"]
    table = Table(title="pitahaya demo", show_lines=False)
    table.add_column("what")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    table.add_row("package", f"{pkg['version']}  {pkg['size_bytes'] / 1024:,.1f} KiB", f"sha256 {pkg['sha256'][:12]}")
    table.add_row("MAE, seconds (test)", f"{off['test_mae']:.3f}", f"{off['baseline_user_mean_mae']:.3f} user mean")
    table.add_row("XAUC (test)", f"{off['test_xauc']:.4f}", f"{off['baseline_user_mean_xauc']:.4f} user mean")
    table.add_row(
        "devices / decisions",
        f"{dev['count']} / {dev['decisions']:,}",
        f"{dev['decisions'] - dev['model_decisions']:,} fallbacks",
    )
    if dev["latency_us_mean"] is not None:
        table.add_row("decision latency, mean", f"{dev['latency_us_mean']:.0f} µs", "")
    sim = summary["simulation"]
    for label, key in (
        ("preload bytes vs fixed", "preload bandwidth"),
        ("total bytes vs fixed", "total bandwidth"),
        ("slow starts vs fixed", "slow starts"),
        ("stall time vs fixed", "stall time"),
    ):
        model, oracle = sim["versus_fixed"]["model"][key], sim["versus_fixed"]["oracle"][key]
        table.add_row(label, change_with_ci(model), f"{change_with_ci(oracle)} oracle")
    fixed = sim["policies"]["fixed"]
    table.add_row(
        "simulated playback",
        f"{sim['sessions']} sessions, {sim['views']:,} views",
        f"fixed: {fixed['total_bytes']['total'] / 1e6:,.0f} MB, {fixed['slow_starts']['total']:.0f} slow starts",
    )
    mon = summary["monitoring"]
    if mon["run_id"] is not None:
        last = mon.get("metrics", {})
        p99 = f", last p99 {last['latency_us_p99']:.0f} µs" if "latency_us_p99" in last else ""
        table.add_row(
            "device telemetry (MLflow)", f"{mon['forwarded_inferences']:,} decisions", f"{mon['minutes']} min{p99}"
        )
    Console().print(table)  # the table is the result: stdout
    console.print(
        "Playback simulated over generated bandwidth traces, 4 classes, 1.0 Mbps video; changes vs fixed 3 x 800 KB.\n"
        f"MLflow UI on these runs (training, simulation {sim['run_id'][:8]}, device monitoring in experiment "
        f"{mon['experiment']}):\n  {summary['mlflow']['ui_command']}",
        soft_wrap=True,
    )
