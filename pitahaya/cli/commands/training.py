"""Commands of the training job: make event logs, train models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pitahaya.cli._common import DEFAULT_SCENE, artifact_root, console, default_data_dir, emit_json, fail, stage_progress, tracking_uri
from pitahaya.cli._options import DataDir, JsonFlag, ScenePath

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
