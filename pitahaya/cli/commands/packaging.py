"""Commands of the packager: build gated algorithm packages (signing keys: `pitahaya.cli.commands.keys`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pitahaya.cli._common import DEFAULT_SCENE, console, default_data_dir, emit_json, fail, stage_progress, tracking_uri
from pitahaya.cli._options import DataDir, JsonFlag, ScenePath

app = typer.Typer()


@app.command()
def package(
    run: Annotated[str | None, typer.Option("--run", help="MLflow run id of a training run.")] = None,
    model_uri: Annotated[
        str | None,
        typer.Option("--model-uri", help="Registered model version: models:/NAME/VERSION or models:/NAME@alias."),
    ] = None,
    version: Annotated[str, typer.Option(help="Package version MAJOR.MINOR.PATCH.")] = "1.0.0",
    scene: ScenePath = DEFAULT_SCENE,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <data-dir>/packages).")] = None,
    register: Annotated[bool, typer.Option(help="Register (or tag) a model version in MLflow.")] = True,
    latency_gate: Annotated[
        bool,
        typer.Option(
            help="Refuse a package whose decision costs more than the scene's max_decision_cost "
            "(--no-latency-gate: build it with a warning)."
        ),
    ] = True,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Convert a run's model to ONNX, bind it with the feature code, and gate it on lint, parity and budgets."""
    from pitahaya.client_runtime import Scene, target_path
    from pitahaya.packaging import BudgetError, LintError, PackagingError, ParityError, build_package

    if (run is None) == (model_uri is None):
        raise fail("pass exactly one of --run RUN_ID and --model-uri models:/NAME/VERSION")
    try:
        with stage_progress(as_json) as progress:
            result = build_package(
                run_id=run,
                model_uri=model_uri,
                scene=Scene.load(scene),
                version=version,
                tracking_uri=tracking_uri(data_dir),
                out_dir=out or data_dir / "packages",
                register=register,
                latency_gate=latency_gate,
                progress=progress,
            )
    except ParityError as e:
        if as_json:
            emit_json({"error": "parity", "parity": e.report.to_dict()})
        _print_plain(e.report.summary())
        raise fail("the parity gate refused the package (report above)") from None
    except BudgetError as e:
        if as_json:
            emit_json({"error": "budget", "message": str(e), "parity": e.report.to_dict() if e.report else None})
        if e.report is not None:
            _print_plain(e.report.summary())
        raise fail(escape(str(e))) from None
    except LintError as e:
        if as_json:
            emit_json({"error": "lint", "violations": [str(v) for v in e.violations]})
        _print_plain("\n".join(str(v) for v in e.violations))
        raise fail(f"feature code refused: {len(e.violations)} violation(s) (listed above)") from None
    except (PackagingError, FileNotFoundError, ValueError) as e:
        raise fail(escape(str(e))) from None
    summary = {
        "path": str(result.path),
        "sha256": result.sha256,
        "size_bytes": result.size_bytes,
        "version": version,
        "model_version": result.model_version,
        "opsets": result.manifest.opsets,
        # The TUF target entry for this archive: signed by the registry, or for a delegated scene by the
        # publisher key at `pitahaya push --signing-key`.
        "tuf_target": {
            "path": target_path(result.manifest.scene, version),
            "length": result.size_bytes,
            "hashes": {"sha256": result.sha256},
        },
        "parity": result.parity.to_dict(),
        "warnings": list(result.warnings),
    }
    if as_json:
        emit_json(summary)
    else:
        console.print(f"package {result.path} ({result.size_bytes:,} bytes, sha256 {result.sha256[:12]}...)")
        console.print(f"opsets {result.manifest.opsets}, model version {result.model_version}", markup=False)
        _print_plain(result.parity.summary())
        for warning in result.warnings:
            _print_plain(f"warning: {warning}")


def _print_plain(text: str) -> None:
    """Print as is: no Rich markup, and long ``file:line`` paths never folded or cut."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)
