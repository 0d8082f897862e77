"""Commands that talk to or run a registry: push, release, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import os

from pitahaya.cli._common import console, default_data_dir, emit_json, fail
from pitahaya.cli._options import DataDir, JsonFlag, RegistryUrl, Token

app = typer.Typer()


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
