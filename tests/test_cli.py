"""Every CLI command answers --help; result-producing commands accept --json."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app

runner = CliRunner()
RESULT_COMMANDS = [
    "generate", "train", "evaluate", "package", "push", "release", "simulate", "demo", "packages", "releases", "audit", "up",
    "status", "down",
]  # fmt: skip
COMMANDS = [*RESULT_COMMANDS, "serve"]


def test_top_level_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", RESULT_COMMANDS)
def test_result_commands_offer_json(command: str) -> None:
    assert "--json" in runner.invoke(app, [command, "--help"]).output


def test_generate_json(tmp_path) -> None:
    out = tmp_path / "events.csv"
    result = runner.invoke(app, ["generate", "--out", str(out), "--views", "2000", "--json"])
    assert result.exit_code == 0, result.output
    assert '"views"' in result.stdout and out.exists()


def test_version_lists_the_installed_distributions() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    versions = dict(line.split() for line in result.stdout.splitlines())
    assert {"pitahaya", "pitahaya-client", "pitahaya-registry"} <= set(versions)
    assert all(version[0].isdigit() for version in versions.values())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_path_of_this_checkout(command: str) -> None:
    """A default computed from where the code lives would show the installing machine's paths."""
    output = runner.invoke(app, [command, "--help"], terminal_width=400).output
    assert str(Path(__file__).resolve().parents[1]) not in output


def test_registry_migrate_prepares_storage_once(tmp_path: Path) -> None:
    """A deployment's one-shot step before its replicas start: the schema at head and a TUF
    repository; a second run (the next deployment) changes neither."""
    import sqlite3

    from alembic.script import ScriptDirectory

    from pitahaya.registry.db import ALEMBIC_DIR

    env = {"PITAHAYA_DATA_DIR": str(tmp_path), "PITAHAYA_REGISTRY_TOKEN": "t" * 32}
    root = tmp_path / "registry" / "tuf" / "metadata" / "1.root.json"
    database = tmp_path / "registry" / "registry.db"

    first = runner.invoke(app, ["registry", "migrate"], env=env)
    assert first.exit_code == 0, first.output
    signed_root = root.read_bytes()
    second = runner.invoke(app, ["registry", "migrate"], env=env)

    assert second.exit_code == 0, second.output
    assert root.read_bytes() == signed_root
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == ScriptDirectory(str(ALEMBIC_DIR)).get_current_head()
