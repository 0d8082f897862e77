"""Every CLI command answers --help; result-producing commands accept --json."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pitahaya.cli.app import app

runner = CliRunner()
COMMANDS = ["generate", "train", "package", "push", "release", "serve", "simulate", "demo"]
RESULT_COMMANDS = ["generate", "train", "package", "push", "release", "simulate", "demo"]


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
