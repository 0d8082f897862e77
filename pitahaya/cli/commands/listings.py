"""Read-only listings of what a registry holds: ``packages``, ``releases`` and ``audit``.

The API has had them all along (`RegistryClient.list_packages`, ``list_releases``,
``list_audit_entries``); these print them as tables on stdout, or as JSON with ``--json``.
Packages and releases need no token; the audit log needs an operator's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pitahaya.cli._common import emit_json
from pitahaya.cli._options import JsonFlag, RegistryUrl, Token
from pitahaya.cli.commands.registry import call_registry

app = typer.Typer()


def _show(key: str, rows: list[dict[str, Any]], columns: Sequence[str], title: str, as_json: bool) -> None:
    """``rows`` as JSON under ``key``, or as a table of ``columns`` (the table is the result: stdout)."""
    if as_json:
        emit_json({key: rows})
        return
    table = Table(*columns, title=f"{title} ({len(rows)})")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    Console(soft_wrap=True).print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


@app.command()
def packages(
    scene: Annotated[str | None, typer.Option(help="Only this scene's packages.")] = None,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """List published packages: scene, version, size, digest, when."""
    rows = call_registry(registry, token, lambda client: client.list_packages(scene))
    columns = ("scene", "version", "size_bytes", "sha256", "created_at")
    _show("packages", rows, columns, "packages", as_json)


@app.command()
def releases(
    scene: Annotated[str, typer.Argument(help="Scene name.")],
    channel: Annotated[str | None, typer.Option(help="Only this channel's releases.")] = None,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """List a scene's releases, newest first: what each did to which share of the fleet."""
    rows = call_registry(registry, token, lambda client: client.list_releases(scene, channel))
    columns = (
        "release_id", "channel", "operation", "package_version", "rollout_percent", "previous_version",
        "paused", "kill_switch", "targeting", "created_at",
    )  # fmt: skip
    _show("releases", rows, columns, f"releases of {scene}", as_json)


@app.command()
def audit(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many entries, newest first.")] = 50,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the registry's audit log, newest first: who did what, when (needs an operator token)."""
    rows = call_registry(registry, token, lambda client: client.list_audit_entries(limit))
    _show("entries", rows, ("id", "at", "actor", "action", "detail"), "audit log", as_json)
