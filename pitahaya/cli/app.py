"""The ``pitahaya`` command line: one verb per step of the pipeline.

Commands live in `pitahaya.cli.commands`, one module per component, and are mounted here
flat (``pitahaya train``, not ``pitahaya training train``). Heavy libraries (LightGBM,
MLflow, FastAPI) are imported inside the commands, so ``pitahaya --help`` stays instant.
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from pitahaya.cli._common import quiet_library_logs
from pitahaya.cli.commands import demo, fleet, keys, listings, packaging, registry, rollout, simulate, stack, training

#: The component distributions besides ``pitahaya`` itself, as ``pitahaya-<name>``.
COMPONENTS = ("client", "publisher", "training", "packaging", "registry", "simulation")

app = typer.Typer(
    name="pitahaya",
    help="Train, package, deliver and run on-device models together with their feature code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (training, packaging, registry, listings, simulate, demo, fleet, stack):
    app.registered_commands += module.app.registered_commands
    app.registered_groups += module.app.registered_groups
app.add_typer(keys.app, name="keys")
app.add_typer(rollout.app, name="rollout")


def _print_version(asked: bool) -> None:
    if not asked:
        return
    names = ["pitahaya", *(f"pitahaya-{part}" for part in COMPONENTS)]
    for name in names:
        try:
            typer.echo(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue  # a component this installation does without
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the installed versions and exit."
        ),
    ] = False,
) -> None:
    """Train, package, deliver and run on-device models together with their feature code."""
    quiet_library_logs()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
