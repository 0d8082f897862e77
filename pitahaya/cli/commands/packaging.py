"""Commands of the packager: build gated algorithm packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pitahaya.cli._common import DEFAULT_SCENE, console, default_data_dir, emit_json, fail, stage_progress, tracking_uri
from pitahaya.cli._options import DataDir, JsonFlag, ScenePath

app = typer.Typer()


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
