"""``pitahaya keys``: the registry's TUF signing keys, and publisher keys for delegated scenes.

Registry keys (``init``, ``list``, ``rotate``, ``resign``) are ed25519 files of
mode 0600 in two places (`TufRepository`): online keys (``registry``, ``snapshot``,
``timestamp``) in ``<tuf_dir>/keys/``, which the running server signs with, and offline keys
(``root``, top-level ``targets``) in ``--offline-keys`` (default ``<tuf_dir>/offline/``),
which the server never loads: after ``init``, move that folder off the host and bring it back
(or point ``--offline-keys`` at it) only for the commands that need it: ``delegate``,
``rotate`` and ``resign``. ``list`` shows where each key is and when a role
needs re-signing (the server renews online roles itself; ``resign`` renews root and
top-level targets). These commands print key ids, never key material.

Publisher keys: ``publisher-init`` creates a key pair on the publisher's machine (the private
half never goes to the registry); ``delegate`` (admin, with the offline ``targets`` key) makes
the top-level ``targets`` delegate a scene's packages to the role ``publisher-<scene>``
trusting the public half(s). It edits the TUF folder directly rather than calling an HTTP
endpoint: who a scene's packages must be signed by is a trust decision taken with the offline
``targets`` key, so neither a leaked admin API token nor the registry host itself can hand a
scene to an attacker's key. ``pitahaya push --signing-key`` then signs that scene's pushes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pitahaya.cli._common import console, default_data_dir, emit_json, fail, report
from pitahaya.cli._options import DataDir, JsonFlag

if TYPE_CHECKING:
    from pitahaya.registry import KeyInfo, TufRepository

app = typer.Typer(
    help="Manage the registry's TUF signing keys (init, list, rotate, resign) and publisher delegations.",
    no_args_is_help=True,
)

TufDir = Annotated[
    Path | None,
    typer.Option("--tuf-dir", envvar="PITAHAYA_TUF_DIR", help="TUF folder (default: <data-dir>/registry/tuf)."),
]


OfflineKeys = Annotated[
    Path | None,
    typer.Option(
        "--offline-keys",
        envvar="PITAHAYA_TUF_OFFLINE_KEYS",
        help="Folder of the offline root and targets keys (default: <tuf-dir>/offline; keep it off the host).",
    ),
]


def _repository(tuf_dir: Path | None, data_dir: Path, offline_keys: Path | None) -> TufRepository:
    """The registry's repository; its metadata in the registry's PostgreSQL database when the
    registry's own ``PITAHAYA_TUF_STORAGE=database`` and ``PITAHAYA_DATABASE_URL`` are set, so
    an admin edits what the replicas serve."""
    from pitahaya.registry import TufRepository
    from pitahaya.registry.db import create_engine_for, upgrade_to_head

    tuf_dir = tuf_dir or data_dir / "registry" / "tuf"
    if os.environ.get("PITAHAYA_TUF_STORAGE", "files") != "database":
        return TufRepository(tuf_dir, offline_keys_dir=offline_keys)
    url = os.environ.get("PITAHAYA_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        raise fail("PITAHAYA_TUF_STORAGE=database needs PITAHAYA_DATABASE_URL=postgresql+psycopg://... (the registry's)")
    engine = create_engine_for(url)
    repo = TufRepository(tuf_dir, offline_keys_dir=offline_keys, database=engine)
    with repo.publish_lock:
        upgrade_to_head(engine)  # `keys init` may be the first to touch a new database
    return repo


@contextmanager
def _key_errors_as_cli_errors() -> Iterator[None]:
    """A key or repository error becomes a one-line error (with the `keys init` hint when nothing exists)."""
    from pitahaya.registry import NotFoundError, RequestError, SigningKeyError

    try:
        yield
    except (SigningKeyError, RequestError, ValueError) as e:
        hint = ": run `pitahaya keys init`" if isinstance(e, NotFoundError) else ""
        raise fail(f"{e}{hint}") from None


def _print_keys(infos: list[KeyInfo], as_json: bool) -> None:
    if as_json:
        emit_json({"keys": [asdict(info) for info in infos]})
        return
    from rich.table import Table

    table = Table("role", "keyid", "where", "mode", "trusted", "expires", "re-sign", "file")
    for info in infos:
        where = info.location if info.present else f"{info.location} (not here)"
        due = ("server" if info.location == "online" else "pitahaya keys resign") if info.resign_due else "-"
        trusted = "yes" if info.trusted else "NO"
        table.add_row(info.role, info.keyid, where, info.mode, trusted, info.expires, due, info.path)
    console.print(table)


@app.command("init")
def init_command(
    tuf_dir: TufDir = None,
    offline_keys: OfflineKeys = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Create the TUF keys (mode 0600) and version 1 of every role; does nothing if they exist.

    Then move the offline folder (root and targets keys) off the registry host.
    """
    repo = _repository(tuf_dir, data_dir, offline_keys)
    with _key_errors_as_cli_errors():
        repo.initialize()
        _print_keys(repo.key_info(), as_json)


@app.command("list")
def list_command(
    tuf_dir: TufDir = None,
    offline_keys: OfflineKeys = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Show each role's key id, where it is, its file mode, trust, expiry and whether it needs re-signing."""
    with _key_errors_as_cli_errors():
        _print_keys(_repository(tuf_dir, data_dir, offline_keys).key_info(), as_json)


@app.command("rotate")
def rotate_command(
    role: Annotated[
        str, typer.Argument(help="Role whose key to replace: root, targets, registry, snapshot or timestamp.")
    ],
    tuf_dir: TufDir = None,
    offline_keys: OfflineKeys = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Replace a role's key so devices follow: a new root version (top-level roles) or a new
    top-level targets version (the online registry role). Needs the offline keys."""
    with _key_errors_as_cli_errors():
        info = _repository(tuf_dir, data_dir, offline_keys).rotate_key(role)
    report(asdict(info), as_json, f"rotated {info.role}: new key {info.keyid} ({info.scheme}, mode {info.mode})")


@app.command("resign")
def resign_command(
    margin: Annotated[
        float, typer.Option(help="Re-sign a role with less than this share of its lifetime left (2 = always).")
    ] = 0.5,
    tuf_dir: TufDir = None,
    offline_keys: OfflineKeys = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Re-sign root and the top-level targets before they expire (where the offline keys are)."""
    with _key_errors_as_cli_errors():
        roles = _repository(tuf_dir, data_dir, offline_keys).resign_offline(margin)
    report({"resigned": roles}, as_json, f"re-signed {', '.join(roles)}" if roles else "nothing to re-sign yet")


@app.command("publisher-init")
def publisher_init_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for publisher.pem (0600) and publisher.pub.pem.")],
    as_json: JsonFlag = False,
) -> None:
    """Create a publisher's ed25519 key pair; give the .pub.pem to the registry admin, keep the .pem."""
    from pitahaya.publisher import SigningKeyError, create_key_pair

    private_path, public_path = out / "publisher.pem", out / "publisher.pub.pem"
    try:
        signer = create_key_pair(private_path, public_path)
    except (SigningKeyError, OSError) as e:
        raise fail(str(e)) from None
    result = {"keyid": signer.public_key.keyid, "private_key": str(private_path), "public_key": str(public_path)}
    report(
        result,
        as_json,
        f"publisher key {result['keyid']}: private {private_path} (0600, keep it), public {public_path}",
    )


@app.command("delegate")
def delegate_command(
    scene: Annotated[str, typer.Option("--scene", help="Scene whose packages only the publisher keys may sign.")],
    publisher_key: Annotated[
        list[Path], typer.Option("--publisher-key", help="Publisher public key (.pub.pem); repeat for several.")
    ],
    threshold: Annotated[int, typer.Option(help="How many of the publisher keys must sign each push.")] = 1,
    tuf_dir: TufDir = None,
    offline_keys: OfflineKeys = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Delegate packages/<scene>/* to the role publisher-<scene> (admin, with the offline targets key)."""
    from pitahaya.client_runtime import validate_scene_name
    from pitahaya.publisher import load_public_key

    with _key_errors_as_cli_errors():
        validate_scene_name(scene)
        keys = [load_public_key(path) for path in publisher_key]
        role = _repository(tuf_dir, data_dir, offline_keys).publishers.delegate(scene, keys, threshold)
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
