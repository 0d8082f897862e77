"""The end-to-end demo."""

from __future__ import annotations

from typing import Annotated

import typer

from pitahaya.cli._common import default_data_dir
from pitahaya.cli._options import DataDir, JsonFlag

app = typer.Typer()


@app.command()
def demo(
    views: Annotated[int, typer.Option(help="Views to generate.")] = 200_000,
    devices: Annotated[int, typer.Option(help="Held-out users to replay, one device each.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Run the whole pipeline locally: generate, train, package, serve, release, devices pull, simulate playback."""
    from pitahaya.cli._demo import DemoConfig, run_demo

    run_demo(DemoConfig(views=views, devices=devices, seed=seed, data_dir=data_dir, as_json=as_json))
