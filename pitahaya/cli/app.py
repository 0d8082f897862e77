"""The ``pitahaya`` command line: one verb per step of the pipeline.

Heavy libraries (LightGBM, MLflow, FastAPI) are imported inside the commands, so
``pitahaya --help`` stays instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pitahaya.cli._common import (
    DEFAULT_SCENE,
    artifact_root,
    console,
    default_data_dir,
    emit_json,
    fail,
    stage_progress,
    tracking_uri,
)

app = typer.Typer(
    name="pitahaya",
    help="Train, package, deliver and run on-device models together with their feature code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Project data folder (MLflow store, keys, registry). Env: PITAHAYA_DATA_DIR.")
]
ScenePath = Annotated[Path, typer.Option("--scene", help="Scene folder holding scene.toml and features.py.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
RegistryUrl = Annotated[
    str, typer.Option("--registry", envvar="PITAHAYA_REGISTRY_URL", help="Registry base URL. Env: PITAHAYA_REGISTRY_URL.")
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="PITAHAYA_REGISTRY_TOKEN", help="API token. Env: PITAHAYA_REGISTRY_TOKEN.")
]


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Event log to write (.csv, .csv.gz, .jsonl).")],
    views: Annotated[int, typer.Option(help="Approximate number of views.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same log).")] = 7,
    as_json: JsonFlag = False,
) -> None:
    """Generate a realistic, seeded event log of short-video views."""
    from pitahaya.training import GeneratorConfig, generate_views, write_events

    generated = generate_views(GeneratorConfig(n_views=views, seed=seed))
    write_events(out, generated)
    users = len({v.user_id for v in generated})
    if as_json:
        emit_json({"path": str(out), "views": len(generated), "users": users, "seed": seed})
    else:
        console.print(f"wrote {len(generated):,} views of {users:,} users to {out}")


@app.command()
def train(
    events: Annotated[Path | None, typer.Option(help="Event log (CSV/JSONL); omitted: generate one.")] = None,
    views: Annotated[int, typer.Option(help="Views to generate when --events is omitted.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    scene: ScenePath = DEFAULT_SCENE,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Train a watch-time model on an event log and track it in MLflow."""
    from pitahaya.client_runtime import Scene
    from pitahaya.training import GeneratorConfig, TrainConfig, TrainingError
    from pitahaya.training import train as run_training

    config = TrainConfig(
        scene=scene,
        events=events,
        generator=None if events else GeneratorConfig(n_views=views, seed=seed),
        tracking_uri=tracking_uri(data_dir),
        artifact_location=artifact_root(data_dir),
        seed=seed,
    )
    try:
        Scene.load(scene)
        with stage_progress(not as_json) as progress:
            result = run_training(config, progress=progress)
    except (TrainingError, FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    summary = {"run_id": result.run_id, "experiment_id": result.experiment_id, "metrics": result.metrics}
    if as_json:
        emit_json(summary)
    else:
        console.print(f"run [bold]{result.run_id}[/]")
        for name, value in sorted(result.metrics.items()):
            console.print(f"  {name:<32} {value:.4f}")


@app.command()
def package(
    run: Annotated[str, typer.Option("--run", help="MLflow run id of a training run.")],
    version: Annotated[str, typer.Option(help="Package version MAJOR.MINOR.PATCH.")] = "1.0.0",
    scene: ScenePath = DEFAULT_SCENE,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <data-dir>/packages).")] = None,
    register: Annotated[bool, typer.Option(help="Register a model version in MLflow.")] = True,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Convert a run's model to ONNX, bind it with the feature code, and gate it on parity."""
    from pitahaya.client_runtime import Scene
    from pitahaya.packaging import PackagingError, build_package

    try:
        with stage_progress(not as_json) as progress:
            result = build_package(
                run_id=run,
                scene=Scene.load(scene),
                version=version,
                tracking_uri=tracking_uri(data_dir),
                out_dir=out or data_dir / "packages",
                register=register,
                progress=progress,
            )
    except PackagingError as e:
        raise fail(str(e)) from None
    summary = {
        "path": str(result.path),
        "sha256": result.sha256,
        "size_bytes": result.size_bytes,
        "version": version,
        "parity": result.parity.to_dict(),
    }
    if as_json:
        emit_json(summary)
    else:
        console.print(f"package {result.path} ({result.size_bytes:,} bytes, sha256 {result.sha256[:12]}...)")
        console.print(result.parity.summary())


@app.command()
def push(
    archive: Annotated[Path, typer.Argument(help="Package archive (.tar.xz) to upload.", exists=True, dir_okay=False)],
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload a package to a registry."""
    from pitahaya.registry import RegistryClient, RegistryClientError

    try:
        result = RegistryClient(registry, token=token).push(archive.read_bytes())
    except RegistryClientError as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(result)
    else:
        console.print(f"pushed {result['scene']} {result['version']} ({result['size_bytes']:,} bytes)")


@app.command()
def release(
    scene: Annotated[str, typer.Argument(help="Scene name.")],
    version: Annotated[str, typer.Argument(help="Package version to release.")],
    channel: Annotated[str, typer.Option(help="Release channel.")] = "stable",
    percent: Annotated[float, typer.Option(help="Rollout percentage (0-100).")] = 100.0,
    kill_switch: Annotated[bool, typer.Option(help="Send every device to the default policy.")] = False,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Release a pushed package version on a channel (a new signed release document)."""
    from pitahaya.registry import RegistryClient, RegistryClientError

    try:
        result = RegistryClient(registry, token=token).create_release(
            scene, version, channel=channel, rollout_percent=percent, kill_switch=kill_switch
        )
    except RegistryClientError as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(result)
    else:
        console.print(f"released {scene} {version} on {channel} at {percent:g}%")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    data_dir: DataDir = default_data_dir(),
) -> None:
    """Run the registry (settings from PITAHAYA_* env vars, e.g. PITAHAYA_REGISTRY_TOKEN)."""
    from pitahaya.registry import ConfigurationError, load_settings
    from pitahaya.registry import serve as run_server

    os.environ.setdefault("PITAHAYA_DATA_DIR", str(data_dir))
    try:
        settings = load_settings()
    except ConfigurationError as e:
        raise fail(str(e)) from None
    run_server(settings, host=host, port=port, workers=workers)


@app.command()
def demo(
    views: Annotated[int, typer.Option(help="Views to generate.")] = 200_000,
    devices: Annotated[int, typer.Option(help="Simulated client devices.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Run the whole pipeline locally: generate, train, package, serve, release, replay on clients."""
    from pitahaya.cli._demo import DemoConfig, run_demo

    run_demo(DemoConfig(views=views, devices=devices, seed=seed, data_dir=data_dir, as_json=as_json))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
