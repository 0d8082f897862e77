"""The ``pitahaya`` command line: one verb per step of the pipeline.

Commands live in `pitahaya.cli.commands`, one module per component, and are mounted here
flat (``pitahaya train``, not ``pitahaya training train``). Heavy libraries (LightGBM,
MLflow, FastAPI) are imported inside the commands, so ``pitahaya --help`` stays instant.
"""

from __future__ import annotations

import typer

from pitahaya.cli.commands import demo, fleet, keys, packaging, registry, rollout, simulate, training

app = typer.Typer(
    name="pitahaya",
    help="Train, package, deliver and run on-device models together with their feature code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (training, packaging, registry, simulate, demo, fleet):
    app.registered_commands += module.app.registered_commands
    app.registered_groups += module.app.registered_groups
app.add_typer(keys.app, name="keys")
app.add_typer(rollout.app, name="rollout")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
