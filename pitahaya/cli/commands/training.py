"""Commands of the training job: make event logs, train models."""

from __future__ import annotations

from datetime import UTC, datetime
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
from pitahaya.cli._options import DataDir, JsonFlag, ScenePath
from pitahaya.training.config import Engine, FeaturePath, ModelFamily

app = typer.Typer()


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
    events: Annotated[
        str | None,
        typer.Option(help="Event logs: a file, a glob ('logs/*.parquet') or s3://bucket/key; omitted: generate one."),
    ] = None,
    adapter: Annotated[str, typer.Option(help="Column mapping of the logs: standard or kuairand.")] = "standard",
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on the first bad row instead of quarantining it.")
    ] = False,
    quarantine: Annotated[
        Path | None,
        typer.Option(help="Where to write rejected rows (JSONL); default <data-dir>/quarantine/<time>.jsonl."),
    ] = None,
    model: Annotated[ModelFamily, typer.Option(help="Model family.")] = "lightgbm",
    features: Annotated[FeaturePath, typer.Option(help="Feature path: auto, batch (vectorized) or stream.")] = "auto",
    engine: Annotated[Engine, typer.Option(help="local, or dask (lightgbm.dask on a Dask cluster).")] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(envvar="PITAHAYA_DASK_SCHEDULER", help="Dask scheduler address; omitted: a LocalCluster."),
    ] = None,
    views: Annotated[int, typer.Option(help="Views to generate when --events is omitted.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    scene: ScenePath = DEFAULT_SCENE,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Train a watch-time model on event logs and track it in MLflow.

    S3 credentials come from the standard AWS variables; PITAHAYA_S3_ENDPOINT_URL points at an
    S3-compatible server. Bad rows are counted by reason and quarantined, never silently dropped.
    """
    from pitahaya.client_runtime import Scene
    from pitahaya.training import GeneratorConfig, TrainConfig, TrainingError
    from pitahaya.training import train as run_training

    if events and quarantine is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        quarantine = data_dir / "quarantine" / f"{stamp}.jsonl"
    try:
        config = TrainConfig(
            scene=scene,
            events=events,
            adapter=adapter,
            strict=strict,
            quarantine_path=quarantine if events else None,
            generator=None if events else GeneratorConfig(n_views=views, seed=seed),
            tracking_uri=tracking_uri(data_dir),
            artifact_location=artifact_root(data_dir),
            model=model,
            features=features,
            engine=engine,
            scheduler=scheduler,
            seed=seed,
        )
        Scene.load(scene)
        with stage_progress(as_json) as progress:
            result = run_training(config, progress=progress)
    except (TrainingError, FileNotFoundError, ValueError) as e:
        raise fail(str(e)) from None
    summary = {
        "run_id": result.run_id,
        "experiment_id": result.experiment_id,
        "model_uri": result.model_uri,
        "model_flavor": result.model_flavor,
        "features_path": result.features_path,
        "metrics": result.metrics,
        "bad_rows": result.bad_rows,
        "quarantine_path": result.quarantine_path,
    }
    if as_json:
        emit_json(summary)
        return
    console.print(f"run [bold]{result.run_id}[/] ({result.model_flavor}, features: {result.features_path})")
    if result.bad_rows:
        console.print(f"[yellow]rejected {sum(result.bad_rows.values()):,} rows[/] -> {result.quarantine_path}")
        for reason, count in result.bad_rows.items():
            console.print(f"  {reason:<32} {count:,}")
    for name, value in sorted(result.metrics.items()):
        console.print(f"  {name:<32} {value:.4f}")


@app.command()
def evaluate(
    package: Annotated[Path, typer.Option(help="The package archive to evaluate.")],
    events: Annotated[str, typer.Option(help="Event logs, as for train: a file, a glob or s3://bucket/key.")],
    adapter: Annotated[str, typer.Option(help="Column mapping of the logs: standard or kuairand.")] = "standard",
    as_json: JsonFlag = False,
) -> None:
    """Replay a log's held-out period through the device runtime on a package: MAE and XAUC.

    The held-out period is the training job's time split of the same log. Every user gets a
    real runtime on the package (feature code, ONNX model, self-test, clamps, fallbacks); each
    held-out view is predicted as it is about to play, with the item figures a feed server
    would have served. The user-mean baseline is scored on the same rows.
    """
    from dataclasses import asdict

    from pitahaya.client_runtime import PackageFormatError
    from pitahaya.training import EventLogError, evaluate_package, load_events

    try:
        table, _ = load_events(events, adapter=adapter)
        result = evaluate_package(package, table)
    except (EventLogError, PackageFormatError, OSError, ValueError) as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(asdict(result))
        return
    console.print(
        f"package {result.version}: {result.rows:,} held-out views of {result.users:,} users, through the runtime"
    )
    console.print(f"  {'model':<20} MAE {result.mae:7.3f} s   XAUC {result.xauc:.4f}")
    console.print(
        f"  {'user-mean baseline':<20} MAE {result.baseline_user_mean_mae:7.3f} s   "
        f"XAUC {result.baseline_user_mean_xauc:.4f}"
    )
    if result.videos < result.rows:
        console.print(
            f"  {'model, videos':<20} MAE {result.videos_mae:7.3f} s   XAUC {result.videos_xauc:.4f}"
            f"   ({result.videos:,} views of known length)"
        )
    coverage = {
        name.removeprefix("coverage_"): v for name, v in result.quantiles.items() if name.startswith("coverage_")
    }
    if coverage:
        shares = ", ".join(f"{level} {share:.3f}" for level, share in coverage.items())
        console.print(f"  {'quantile coverage':<20} {shares}   (share watched at most the level's prediction)")
    if result.fallbacks:
        console.print(f"  [yellow]fallbacks[/] {result.fallbacks}")
