"""Gated rollouts: ``release --gate`` reads its spec here; ``rollout status`` shows where one stands.

A gate is a preset name (``standard``, ``fast``, ``cautious``) or a JSON or TOML file with a
spec (``steps``, ``min_inferences``, ``min_outcomes``, ``min_step_seconds``, ``alpha``,
``on_fail``, ``margins``; optionally ``preset`` for the fields left out)::

    pitahaya release watch_time 1.2.0 --gate standard
    pitahaya release watch_time 1.2.0 --gate gate.toml
    pitahaya rollout status watch_time --json
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pitahaya.cli._common import console, emit_json, fail
from pitahaya.cli._options import JsonFlag, RegistryUrl, Token

app = typer.Typer(help="Follow gated rollouts (operator token).", no_args_is_help=True)

PRESETS = ("standard", "fast", "cautious")


def read_gate(value: str) -> str | dict[str, Any]:
    """``--gate``: a preset name, or the spec in a JSON (``.json``) or TOML file.

    Raises:
        typer.Exit: neither a preset nor a readable spec file.
    """
    if value in PRESETS:
        return value
    path = Path(value)
    if not path.is_file():
        raise fail(f"--gate {value}: not a preset ({', '.join(PRESETS)}) nor a file")
    try:
        text = path.read_text()
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise fail(f"--gate {value}: {e}") from None
    if not isinstance(spec, dict):
        raise fail(f"--gate {value}: the spec must be an object")
    return spec


@app.command("status")
def status(
    scene: Annotated[str, typer.Argument(help="Scene name.")],
    channel: Annotated[str, typer.Option(help="Release channel.")] = "stable",
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a channel's live release and its quality gate: state, step, latest evidence, history."""
    from pitahaya.cli.commands.registry import call_registry

    result = call_registry(registry, token, lambda client: client.rollout_status(scene, channel=channel))
    if as_json:
        emit_json(result)
        return
    state = f"{result['rollout_percent']:g}%" + (" paused" if result["paused"] else "")
    console.print(
        f"{scene} on {channel}: {result['package_version']} at {state} (release {result['release_id']}); "
        f"others run {_underneath(result)}"
    )
    gate = result.get("gate")
    if gate is None:
        console.print("no quality gate")
        return
    steps = " -> ".join(f"[bold]{s:g}%[/]" if i == gate["step"] else f"{s:g}%" for i, s in enumerate(gate["steps"]))
    console.print(f"gate {gate['gate_id']} on {gate['package_version']}: {gate['state']}   steps {steps}")
    evidence = gate.get("evidence") or {}
    if evidence:
        table = Table(title=f"latest evidence: {evidence.get('verdict')}")
        for column in ("check", "verdict", "new", "baseline", "gap interval", "limit"):
            table.add_column(column)
        for check in evidence.get("checks", []):
            table.add_row(
                check["name"],
                check["verdict"],
                _number(check["new"]),
                _number(check["baseline"]),
                f"[{_number(check['gap_low'])}, {_number(check['gap_high'])}]",
                _number(check["limit"]),
            )
        console.print(table)
        console.print(
            f"new version: {evidence.get('new_inferences', 0):,.0f} decisions on {evidence.get('new_devices', 0)} "
            f"devices; baseline: {evidence.get('baseline_inferences', 0):,.0f} on {evidence.get('baseline_devices', 0)}"
        )
    for step in gate["history"]:
        console.print(f"{step['at']}  {step['action']:<8} {step['from_percent']:g}% -> {step['to_percent']}")


def _underneath(result: dict[str, Any]) -> str:
    earlier = [f"{r['package_version']} ({r['rollout_percent']:g}%)" for r in result.get("earlier", [])]
    return ", then ".join([*earlier, result["previous_version"] or "the default policy"])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
