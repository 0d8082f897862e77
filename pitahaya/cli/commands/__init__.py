"""One module per component; each holds a Typer app whose commands `pitahaya.cli.app` mounts."""
