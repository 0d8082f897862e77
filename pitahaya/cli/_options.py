"""Option types shared by several commands (same flag, same env var, same help everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Project data folder (MLflow store, keys, registry). Env: PITAHAYA_DATA_DIR.")
]
ScenePath = Annotated[
    Path,
    typer.Option(
        "--scene", help="Scene folder holding scene.toml and features.py.", show_default="the bundled scenes/watch_time"
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
RegistryUrl = Annotated[
    str,
    typer.Option("--registry", envvar="PITAHAYA_REGISTRY_URL", help="Registry base URL. Env: PITAHAYA_REGISTRY_URL."),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="PITAHAYA_REGISTRY_TOKEN", help="API token. Env: PITAHAYA_REGISTRY_TOKEN."),
]
