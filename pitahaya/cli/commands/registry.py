"""Commands that talk to or run a registry.

Publishing: ``push`` (``--signing-key`` for a scene delegated to publisher keys). Rollouts (operator token): ``release``, ``widen``, ``pause``,
``resume``, ``revert``, ``rollback``, ``kill-switch`` (``release --gate`` and ``rollout status``:
`pitahaya.cli.commands.rollout`). Tokens (admin token): ``tokens create|list|revoke``.
Running it: ``serve``, ``registry migrate`` before a deployment's replicas start, and
``registry gc`` for orphan blobs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pitahaya.cli._common import console, default_data_dir, emit_json, fail, report
from pitahaya.cli._options import DataDir, JsonFlag, RegistryUrl, Token

if TYPE_CHECKING:
    from pitahaya.publisher import RegistryClient

app = typer.Typer()
tokens_app = typer.Typer(help="Create, list and revoke API tokens (needs an admin token).", no_args_is_help=True)
registry_app = typer.Typer(help="Maintain a registry's storage.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")
app.add_typer(registry_app, name="registry")

Channel = Annotated[str, typer.Option(help="Release channel.")]
Scene = Annotated[str, typer.Argument(help="Scene name.")]


def call_registry(registry: str, token: str | None, operation: Callable[[RegistryClient], Any]) -> Any:
    """Run one client call, turning publisher-client errors into a one-line CLI error."""
    from pitahaya.publisher import PublisherError, RegistryClient, RegistryRejected

    try:
        with RegistryClient(registry, token=token) as client:
            return operation(client)
    except RegistryRejected as e:
        # The server names its HTTP header; a CLI user sets a variable or a flag.
        hint = " (set PITAHAYA_REGISTRY_TOKEN or pass --token)" if e.status_code == 401 else ""
        raise fail(f"{e}{hint}") from None
    except PublisherError as e:
        raise fail(str(e)) from None


def _show_release(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    state = [f"{result['rollout_percent']:g}%"]
    if result.get("paused"):
        state.append("paused")
    if result.get("kill_switch"):
        state.append("KILL SWITCH ON")
    console.print(
        f"{result.get('operation', 'create')}: {result['scene']} {result['package_version']} on "
        f"{result['channel']} ({', '.join(state)}; others keep {_kept(result)})"
    )


def _kept(result: dict[str, Any]) -> str:
    earlier = [
        f"{r['package_version']} where it reached ({r['rollout_percent']:g}%)" for r in result.get("earlier", [])
    ]
    return ", then ".join([*earlier, result["previous_version"] or "the default policy"])


@app.command()
def push(
    archive: Annotated[Path, typer.Argument(help="Package archive (.tar.xz) to upload.", exists=True, dir_okay=False)],
    signing_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--signing-key",
            envvar="PITAHAYA_PUBLISHER_KEY",
            help="Publisher private key (0600 PEM) of a delegated scene; repeat to meet a threshold. "
            "Env: PITAHAYA_PUBLISHER_KEY.",
        ),
    ] = None,
    trust_current_targets: Annotated[
        bool,
        typer.Option(
            help="Sign on top of the scene's current targets although the delegation's keys did not sign them "
            "(once, after the scene was re-delegated to new keys; check them first)."
        ),
    ] = False,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload a package to a registry (publisher token); a delegated scene's push is signed with --signing-key."""
    from pitahaya.publisher import load_private_key

    def upload(client: RegistryClient) -> Any:
        signers = [load_private_key(path) for path in signing_key or []]
        return client.push(archive.read_bytes(), signers=signers, trust_current=trust_current_targets)

    result = call_registry(registry, token, upload)
    report(result, as_json, f"pushed {result['scene']} {result['version']} ({result['size_bytes']:,} bytes)")


@app.command()
def release(
    scene: Scene,
    version: Annotated[str, typer.Argument(help="Package version to release.")],
    channel: Channel = "stable",
    percent: Annotated[
        float | None, typer.Option(help="Rollout percentage (0-100); default 100, or the gate's first step.")
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option(
            help="Roll out in steps gated on the devices' figures: a preset (standard, fast, cautious) "
            "or a JSON/TOML spec file; see `pitahaya rollout status`."
        ),
    ] = None,
    kill_switch: Annotated[bool, typer.Option(help="Send every device to the default policy.")] = False,
    platform: Annotated[
        list[str] | None, typer.Option(help="Only devices on this platform (repeat for several).")
    ] = None,
    app_version_min: Annotated[str | None, typer.Option(help="Lowest host-app version (inclusive).")] = None,
    app_version_max: Annotated[str | None, typer.Option(help="Highest host-app version (inclusive).")] = None,
    paused: Annotated[bool, typer.Option(help="Publish the release halted.")] = False,
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Release a pushed package version on a channel (a new signed release document; operator token)."""
    from pitahaya.cli.commands.rollout import read_gate

    spec = read_gate(gate) if gate is not None else None
    if spec is not None and (percent is not None or kill_switch or paused):
        raise fail("--gate starts the release at the gate's first step: leave out --percent, --kill-switch, --paused")
    result = call_registry(
        registry,
        token,
        lambda client: client.create_release(
            scene,
            version,
            channel=channel,
            rollout_percent=100.0 if percent is None else percent,
            kill_switch=kill_switch,
            platforms=platform or None,
            app_version_min=app_version_min,
            app_version_max=app_version_max,
            paused=paused,
            gate=spec,
        ),
    )
    _show_release(result, as_json)


@app.command()
def widen(
    scene: Scene,
    percent: Annotated[float, typer.Argument(help="New rollout percentage, above the current one.")],
    channel: Channel = "stable",
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Raise the live release's rollout percentage."""
    _show_release(
        call_registry(registry, token, lambda client: client.widen_release(scene, percent, channel=channel)), as_json
    )


def _channel_command(name: str, operation: Callable[[RegistryClient, str, str], Any], summary: str) -> None:
    """Add ``pitahaya <name> SCENE [--channel C]``: a release operation that needs nothing else.

    ``operation(client, scene, channel)`` makes the call; ``summary`` is the command's help.
    """

    def command(
        scene: Scene,
        channel: Channel = "stable",
        registry: RegistryUrl = "http://127.0.0.1:8000",
        token: Token = None,
        as_json: JsonFlag = False,
    ) -> None:
        _show_release(call_registry(registry, token, lambda client: operation(client, scene, channel)), as_json)

    app.command(name, help=summary)(command)


_channel_command(
    "pause",
    lambda client, scene, channel: client.pause_release(scene, channel=channel),
    "Halt the live rollout: devices return to the previous version on their next refresh.",
)
_channel_command(
    "resume",
    lambda client, scene, channel: client.resume_release(scene, channel=channel),
    "Resume a paused rollout at its percentage.",
)
_channel_command(
    "revert",
    lambda client, scene, channel: client.revert_release(scene, channel=channel),
    "Undo the live rollout: every device returns to what it ran before that release.",
)


@app.command()
def rollback(
    scene: Scene,
    version: Annotated[str, typer.Argument(help="The older published version every device returns to.")],
    channel: Channel = "stable",
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Roll a channel back to an older package (a new release at 100 %)."""
    _show_release(
        call_registry(registry, token, lambda client: client.rollback_release(scene, version, channel=channel)), as_json
    )


@app.command("kill-switch")
def kill_switch(
    scene: Scene,
    on: Annotated[
        bool | None, typer.Option("--on/--off", help="Turn the kill switch on (default policy) or off.")
    ] = None,
    channel: Channel = "stable",
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Send every device on a channel to the built-in default policy, or undo that."""
    if on is None:
        raise fail("say --on (every device on the default policy) or --off (back to the live release)")
    _show_release(
        call_registry(registry, token, lambda client: client.set_kill_switch(scene, on, channel=channel)), as_json
    )


@tokens_app.command("create")
def create_token(
    name: Annotated[str, typer.Argument(help="Unique token name, e.g. ci-publisher (shown in the audit log).")],
    role: Annotated[str, typer.Option(help="publisher (push), operator (releases), client (telemetry) or admin.")],
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Mint a token; its secret is printed once and cannot be shown again."""
    result = call_registry(registry, token, lambda client: client.create_token(name, role))
    if as_json:
        emit_json(result)
        return
    console.print(f"created token {result['name']} with role {result['role']}; store the secret now, it is shown once:")
    typer.echo(result["secret"])


@tokens_app.command("list")
def list_tokens(
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """List tokens: names, roles, who created them, revocation (never secrets)."""
    result = call_registry(registry, token, lambda client: client.list_tokens())
    if as_json:
        emit_json({"tokens": result})
        return
    for item in result:
        state = f"revoked {item['revoked_at']}" if item["revoked_at"] else "active"
        typer.echo(f"{item['name']}\t{item['role']}\t{state}\tcreated {item['created_at']} by {item['created_by']}")


@tokens_app.command("revoke")
def revoke_token(
    name: Annotated[str, typer.Argument(help="Token name.")],
    registry: RegistryUrl = "http://127.0.0.1:8000",
    token: Token = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token: the registry refuses it (401) from the next request on."""
    result = call_registry(registry, token, lambda client: client.revoke_token(name))
    report(result, as_json, f"revoked token {result['name']}")


@registry_app.command("migrate")
def migrate(data_dir: DataDir = default_data_dir()) -> None:
    """Apply pending database migrations and create the TUF keys on first run, then exit (what
    serve does on start; run it once before a deployment's replicas start). Same settings as serve."""
    from pitahaya.registry import ConfigurationError, load_settings
    from pitahaya.registry import migrate as migrate_storage

    os.environ.setdefault("PITAHAYA_DATA_DIR", str(data_dir))
    try:
        migrate_storage(load_settings())
    except ConfigurationError as e:
        raise fail(str(e)) from None
    console.print("registry storage is at this version's schema; TUF repository ready")


@registry_app.command("gc")
def gc(
    min_age_seconds: Annotated[
        float | None,
        typer.Option(help="Keep orphans and temp files younger than this (pushes in flight). Default from settings."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be deleted.")] = False,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Delete orphan blobs (left by a push that crashed before committing) and temp files of blob
    writes a killed process left; same settings as serve."""
    from pitahaya.registry import ConfigurationError, RegistryError, collect_garbage, load_settings

    os.environ.setdefault("PITAHAYA_DATA_DIR", str(data_dir))
    try:
        result = collect_garbage(load_settings(), min_age_seconds=min_age_seconds, dry_run=dry_run)
    except (ConfigurationError, RegistryError) as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json({**dataclasses.asdict(result), "dry_run": dry_run})
    else:
        verb = "would delete" if dry_run else "deleted"
        console.print(
            f"{verb} {len(result.deleted)} orphan blobs and {len(result.deleted_temp_files)} temp files of "
            f"unfinished writes; kept {len(result.kept_young)} + {len(result.kept_young_temp_files)} younger ones"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    data_dir: DataDir = default_data_dir(),
) -> None:
    """Run the registry (settings from PITAHAYA_* env vars or PITAHAYA_CONFIG_FILE, e.g. PITAHAYA_REGISTRY_TOKEN)."""
    from pitahaya.registry import ConfigurationError, load_settings
    from pitahaya.registry import serve as run_server

    os.environ.setdefault("PITAHAYA_DATA_DIR", str(data_dir))
    try:
        settings = load_settings()
    except ConfigurationError as e:
        raise fail(str(e)) from None
    run_server(settings, host=host, port=port, workers=workers)
