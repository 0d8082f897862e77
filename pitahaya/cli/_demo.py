"""``pitahaya demo``: the whole pipeline on one machine, end to end, on embedded defaults.

generate events -> train (MLflow) -> package (ONNX + parity gate, MLflow model version)
-> start a real registry on 127.0.0.1 -> push -> release -> simulated devices pull the
package over HTTP through TUF and replay held-out sessions -> summary table.

Every demo run starts a fresh registry and fresh device caches under
``<data-dir>/demo/``; the MLflow store under ``<data-dir>`` accumulates runs.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pitahaya.cli._common import DEFAULT_SCENE, artifact_root, console, emit_json, stage_progress, tracking_uri
from pitahaya.cli._replay import ReplayStats, held_out_users, replay_device, streams_by_user
from pitahaya.cli._server import registry_process


@dataclass(frozen=True)
class DemoConfig:
    """Size and location of a demo run."""

    views: int = 200_000
    devices: int = 8
    seed: int = 7
    data_dir: Path = Path(".pitahaya")
    as_json: bool = False
    version: str = "1.0.0"
    scene_path: Path = DEFAULT_SCENE


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo and print its summary; returns the summary as a dict."""
    from pitahaya.client_runtime import Runtime, Scene
    from pitahaya.packaging import build_package
    from pitahaya.registry import RegistryClient
    from pitahaya.training import GeneratorConfig, TrainConfig, generate_views, train, write_events

    data_dir = config.data_dir
    work = data_dir / "demo"
    for stale in ("registry", "devices", "packages"):
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    scene = Scene.load(config.scene_path)
    token = secrets.token_urlsafe(24)
    mlflow_uri = tracking_uri(data_dir)

    with stage_progress(not config.as_json) as progress:
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

        with registry_process(work / "registry", token) as url:
            progress("push + release", 0.0)
            registry = RegistryClient(url, token=token)
            registry.push(built.path.read_bytes())
            registry.create_release(scene.name, config.version, channel="stable", rollout_percent=100.0)
            trusted_root = registry.root_metadata()
            progress("push + release", 1.0)

            streams = streams_by_user(views)
            users = held_out_users(streams, result.test_from, config.devices, config.seed)
            total = ReplayStats()
            installs: dict[str, int] = {}
            for n, user in enumerate(users):
                runtime = Runtime(
                    url,
                    scene.name,
                    device_id=f"device-{user}",
                    cache_dir=work / "devices" / user,
                    trusted_root=trusted_root,
                )
                update = runtime.refresh()
                installs[update.outcome] = installs.get(update.outcome, 0) + 1
                total.merge(replay_device(runtime, streams[user], result.test_from))
                progress("replay on devices", (n + 1) / max(len(users), 1))

    summary = _summary(config, result, built, total, installs, mlflow_uri)
    if config.as_json:
        emit_json(summary)
    else:
        _print_summary(summary)
    return summary


def _summary(config: DemoConfig, result: Any, built: Any, stats: ReplayStats, installs: dict[str, int], mlflow_uri: str) -> dict[str, Any]:
    latencies_us = np.asarray(stats.latencies_s) * 1e6
    saving = 1.0 - stats.model_bytes / stats.fixed_bytes if stats.fixed_bytes else 0.0
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    return {
        "package": {"version": config.version, "size_bytes": built.size_bytes, "sha256": built.sha256},
        "offline": {k: result.metrics[k] for k in sorted(result.metrics)},
        "devices": {
            "count": sum(installs.values()),
            "update_outcomes": installs,
            "decisions": stats.decisions,
            "model_decisions": stats.model_decisions,
            "fallback_reasons": stats.fallback_reasons,
            "latency_us_p50": float(np.percentile(latencies_us, 50)) if stats.decisions else None,
            "latency_us_p99": float(np.percentile(latencies_us, 99)) if stats.decisions else None,
            "online_mae_s": float(np.mean(stats.abs_errors)) if stats.abs_errors else None,
        },
        "preload": {
            "views": stats.views,
            "model_bytes": stats.model_bytes,
            "fixed_bytes": stats.fixed_bytes,
            "saving": saving,
            "model_wasted_bytes": stats.model_wasted,
            "fixed_wasted_bytes": stats.fixed_wasted,
            "model_starts_covered": stats.model_covered / stats.views if stats.views else None,
            "fixed_starts_covered": stats.fixed_covered / stats.views if stats.views else None,
        },
        "mlflow": {"run_id": result.run_id, "ui_command": f"{mlflow_bin} ui --backend-store-uri {mlflow_uri}"},
    }


def _print_summary(summary: dict[str, Any]) -> None:
    off, dev, pre, pkg = summary["offline"], summary["devices"], summary["preload"], summary["package"]
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
    if dev["latency_us_p50"] is not None:
        table.add_row("decision latency p50 / p99", f"{dev['latency_us_p50']:.0f} / {dev['latency_us_p99']:.0f} µs", "")
    table.add_row(
        "preload bytes (held-out views)",
        f"{pre['model_bytes'] / 1e6:,.1f} MB",
        f"{pre['fixed_bytes'] / 1e6:,.1f} MB fixed 3 x 800 KB",
    )
    table.add_row("preload saving", f"{pre['saving']:.1%}", "")
    table.add_row(
        "wasted preload bytes",
        f"{pre['model_wasted_bytes'] / 1e6:,.1f} MB",
        f"{pre['fixed_wasted_bytes'] / 1e6:,.1f} MB",
    )
    if pre["model_starts_covered"] is not None:
        table.add_row(
            "starts with >= 1 s preloaded",
            f"{pre['model_starts_covered']:.1%}",
            f"{pre['fixed_starts_covered']:.1%}",
        )
    Console().print(table)  # the table is the result: stdout
    console.print(f"MLflow UI on these runs:\n  {summary['mlflow']['ui_command']}", soft_wrap=True)
