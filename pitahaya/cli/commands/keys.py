"""``pitahaya keys``: the registry's TUF signing keys, and publisher keys for delegated scenes.

Registry keys (``init``, ``list``, ``rotate``) live where the registry's `TufRepository`
keeps them (``<tuf_dir>/keys/<role>.pem``, ed25519, mode 0600); these commands print key
ids, never key material. Rotation is `TufRepository.rotate_key`: one new root version that
devices holding the old root follow.

Publisher keys: ``publisher-init`` creates a key pair on the publisher's machine (the private
half never goes to the registry); ``delegate`` (admin, on the registry host) makes the
registry's ``targets`` role delegate a scene's packages to the role ``publisher-<scene>``
trusting the public half(s). It edits the TUF folder directly, like ``rotate``, rather than
calling an HTTP endpoint: who a scene's packages must be signed by is a trust decision taken
with the ``targets`` key on the host that holds it, so a leaked admin API token cannot hand a
scene to an attacker's key. ``pitahaya push --signing-key`` then signs that scene's pushes.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pitahaya.cli._common import console, default_data_dir, emit_json, fail
from pitahaya.cli._options import DataDir, JsonFlag

if TYPE_CHECKING:
    from pitahaya.registry.tuf_repo import KeyInfo, TufRepository

app = typer.Typer(
    help="Manage the registry's TUF signing keys (init, list, rotate) and publisher delegations.",
    no_args_is_help=True,
)

TufDir = Annotated[
    Path | None,
    typer.Option("--tuf-dir", envvar="PITAHAYA_TUF_DIR", help="TUF folder (default: <data-dir>/registry/tuf)."),
]


def _repository(tuf_dir: Path | None, data_dir: Path) -> TufRepository:
    from pitahaya.registry.tuf_repo import TufRepository

    return TufRepository(tuf_dir or data_dir / "registry" / "tuf")


def _key_errors() -> tuple[type[Exception], ...]:
    from pitahaya.registry.errors import RequestError, SigningKeyError

    return SigningKeyError, RequestError, ValueError


def _not_initialized(e: Exception) -> typer.Exit:
    from pitahaya.registry.errors import NotFoundError

    hint = ": run `pitahaya keys init`" if isinstance(e, NotFoundError) else ""
    return fail(f"{e}{hint}")


def _print_keys(infos: list[KeyInfo], as_json: bool) -> None:
    if as_json:
        emit_json({"keys": [asdict(info) for info in infos]})
        return
    from rich.table import Table

    table = Table("role", "keyid", "scheme", "mode", "trusted", "file")
    for info in infos:
        table.add_row(info.role, info.keyid, info.scheme, info.mode, "yes" if info.trusted else "NO", info.path)
    console.print(table)


@app.command("init")
def init_command(tuf_dir: TufDir = None, data_dir: DataDir = default_data_dir(), as_json: JsonFlag = False) -> None:
    """Create the TUF keys (mode 0600) and version 1 of every role; does nothing if they exist."""
    repo = _repository(tuf_dir, data_dir)
    try:
        repo.initialize()
        _print_keys(repo.key_info(), as_json)
    except _key_errors() as e:
        raise _not_initialized(e) from None


@app.command("list")
def list_command(tuf_dir: TufDir = None, data_dir: DataDir = default_data_dir(), as_json: JsonFlag = False) -> None:
    """Show each role's key id, scheme, file mode and whether the current root trusts it."""
    try:
        _print_keys(_repository(tuf_dir, data_dir).key_info(), as_json)
    except _key_errors() as e:
        raise _not_initialized(e) from None


@app.command("rotate")
def rotate_command(
    role: Annotated[str, typer.Argument(help="Role whose key to replace: root, targets, snapshot or timestamp.")],
    tuf_dir: TufDir = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Replace a role's key and publish one new root version, signed so devices follow the rotation."""
    try:
        info = _repository(tuf_dir, data_dir).rotate_key(role)
    except _key_errors() as e:
        raise _not_initialized(e) from None
    if as_json:
        emit_json(asdict(info))
    else:
        console.print(f"rotated {info.role}: new key {info.keyid} ({info.scheme}, mode {info.mode})")


@app.command("publisher-init")
def publisher_init_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for publisher.pem (0600) and publisher.pub.pem.")],
    as_json: JsonFlag = False,
) -> None:
    """Create a publisher's ed25519 key pair; give the .pub.pem to the registry admin, keep the .pem."""
    from pitahaya.registry.errors import SigningKeyError
    from pitahaya.registry.key_files import create_key_pair

    private_path, public_path = out / "publisher.pem", out / "publisher.pub.pem"
    try:
        signer = create_key_pair(private_path, public_path)
    except (SigningKeyError, OSError) as e:
        raise fail(str(e)) from None
    result = {"keyid": signer.public_key.keyid, "private_key": str(private_path), "public_key": str(public_path)}
    if as_json:
        emit_json(result)
    else:
        console.print(f"publisher key {result['keyid']}: private {private_path} (0600, keep it), public {public_path}")


@app.command("delegate")
def delegate_command(
    scene: Annotated[str, typer.Option("--scene", help="Scene whose packages only the publisher keys may sign.")],
    publisher_key: Annotated[
        list[Path], typer.Option("--publisher-key", help="Publisher public key (.pub.pem); repeat for several.")
    ],
    threshold: Annotated[int, typer.Option(help="How many of the publisher keys must sign each push.")] = 1,
    tuf_dir: TufDir = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Delegate packages/<scene>/* to the role publisher-<scene> (admin, on the registry host)."""
    from pitahaya.client_runtime.package import validate_scene_name
    from pitahaya.registry.key_files import load_public_key

    try:
        validate_scene_name(scene)
        keys = [load_public_key(path) for path in publisher_key]
        role = _repository(tuf_dir, data_dir).delegate(scene, keys, threshold)
    except _key_errors() as e:
        raise _not_initialized(e) from None
    result = {
        "scene": scene,
        "role": role.name,
        "keyids": role.keyids,
        "threshold": role.threshold,
        "paths": role.paths,
    }
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"delegated {', '.join(role.paths or [])} to {role.name}: {role.threshold} of {len(role.keyids)} key(s)"
        )
