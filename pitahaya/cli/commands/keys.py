"""``pitahaya keys init|list|rotate``: the TUF signing keys of the registry's key directory.

The keys live where the registry's `TufRepository` keeps them (``<tuf_dir>/keys/<role>.pem``,
ed25519, mode 0600) and never leave that folder: these commands print key ids, never key
material. Rotation follows TUF's root-rotation rule so devices keep trusting the registry:

1. under the repository's publish lock, generate the role's new key in memory;
2. write root version N+1 trusting the new key instead of the old one, signed by the current
   root key (and, when root itself rotates, by the new root key too), so a device holding
   root N verifies N+1 and follows;
3. replace the key file (written 0600 first, then renamed over the old one);
4. re-sign every role with the now-current keys (`TufRepository.refresh` with a margin that
   selects them all), so the targets/snapshot/timestamp devices fetch next verify under N+1.

Step 4 also bumps root once more (N+2, same keys): `refresh` offers no way to re-sign only
the chain below root. A registry-side ``TufRepository.rotate_key(role)`` would avoid that and
the metadata-layout knowledge in this module (see the packaging report).
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pitahaya.cli._common import console, default_data_dir, emit_json, fail
from pitahaya.cli._options import DataDir, JsonFlag

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

    from pitahaya.registry.tuf_repo import TufRepository

app = typer.Typer(help="Manage the registry's TUF signing keys (init, list, rotate).", no_args_is_help=True)

KEY_FILE_MODE = 0o600
METADATA_FILE_MODE = 0o644  # served to anyone, as the registry writes it
#: A margin above 1 makes `TufRepository.refresh` re-sign every role (each has less than
#: twice its lifetime left by construction).
RESIGN_ALL_MARGIN = 2.0

TufDir = Annotated[
    Path | None,
    typer.Option("--tuf-dir", envvar="PITAHAYA_TUF_DIR", help="TUF folder (default: <data-dir>/registry/tuf)."),
]


class KeyManagementError(Exception):
    """A signing key is missing, unreadable or unsafe; nothing was changed."""


class KeyMissingError(KeyManagementError):
    """A role's key file does not exist: run ``pitahaya keys init`` (or restore the key)."""


class KeyPermissionError(KeyManagementError):
    """A key file is readable by others: ``chmod 600`` it (and consider it leaked)."""


@dataclass(frozen=True)
class KeyInfo:
    """What ``keys list`` shows about one role's key (never the key itself).

    Attributes:
        role: TUF role.
        keyid: TUF key id of the public key.
        scheme: Signature scheme (``ed25519``).
        mode: File mode, octal text (``0600``).
        trusted: Whether the newest root lists this key for the role.
        path: The key file.
    """

    role: str
    keyid: str
    scheme: str
    mode: str
    trusted: bool
    path: str


def _repository(tuf_dir: Path) -> TufRepository:
    from pitahaya.registry.tuf_repo import TufRepository

    return TufRepository(tuf_dir)


def _load_signer(path: Path) -> CryptoSigner:
    """The signer in a key file, refusing missing or group/world-accessible files."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyMissingError(f"no key file {path}: run `pitahaya keys init` or restore it from backup") from None
    if mode & 0o077:
        raise KeyPermissionError(f"key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})")
    try:
        return CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
    except (ValueError, TypeError) as e:
        raise KeyManagementError(f"key file {path} is not an unencrypted PEM private key: {e}") from e


def _current_root(repo: TufRepository):  # -> Metadata[Root]
    from tuf.api.metadata import Metadata, Root

    from pitahaya.registry.errors import NotFoundError

    try:
        return Metadata[Root].from_bytes(repo.metadata_bytes("root.json"))
    except NotFoundError as e:
        raise KeyMissingError(f"{e}: run `pitahaya keys init`") from None


def list_keys(tuf_dir: Path) -> list[KeyInfo]:
    """Role, key id, scheme, file mode and trust of every role's key.

    Raises:
        KeyManagementError: a key is missing, readable by others, or not a key; or the
            repository is not initialized.
    """
    from pitahaya.registry.tuf_repo import ROLES

    repo = _repository(tuf_dir)
    root = _current_root(repo).signed
    infos = []
    for role in ROLES:
        path = repo.keys_dir / f"{role}.pem"
        public = _load_signer(path).public_key
        mode = stat.S_IMODE(path.stat().st_mode)
        infos.append(
            KeyInfo(
                role, public.keyid, public.scheme, f"{mode:04o}", public.keyid in root.roles[role].keyids, str(path)
            )
        )
    return infos


def init_keys(tuf_dir: Path) -> list[KeyInfo]:
    """Create the keys and version 1 of every role unless they exist; then list the keys."""
    _repository(tuf_dir).initialize()
    return list_keys(tuf_dir)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file created 0600 (a key never exists with a wider mode), chmod, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rotate_key(tuf_dir: Path, role: str, *, now: datetime | None = None) -> KeyInfo:
    """Replace ``role``'s key and publish a root that devices follow to the new key.

    Returns:
        The new key's info.

    Raises:
        ValueError: ``role`` is not a TUF role.
        KeyManagementError: a key needed for signing is missing or unsafe (nothing changed).
    """
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Root

    from pitahaya.registry.tuf_repo import EXPIRY, ROLES

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    repo = _repository(tuf_dir)
    with repo.publish_lock:
        for each in ROLES:  # refuse before changing anything if any signer is unusable
            _load_signer(repo.keys_dir / f"{each}.pem")
        root_signer = _load_signer(repo.keys_dir / f"{Root.type}.pem")
        root = _current_root(repo)
        new_signer = CryptoSigner.generate_ed25519()
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        root.signed.add_key(new_signer.public_key, role)
        root.signed.version += 1
        signed_at = (now or datetime.now(UTC)).replace(microsecond=0)
        root.signed.expires = signed_at + EXPIRY[Root.type]
        root.sign(root_signer)
        if role == Root.type:
            root.sign(new_signer, append=True)
        key_path = repo.keys_dir / f"{role}.pem"
        pending_key = key_path.with_name(key_path.name + ".new")
        _atomic_write(pending_key, new_signer.private_bytes, KEY_FILE_MODE)
        _atomic_write(repo.metadata_dir / f"{root.signed.version}.root.json", root.to_bytes(), METADATA_FILE_MODE)
        os.replace(pending_key, key_path)
        repo.refresh(margin=RESIGN_ALL_MARGIN)
    return next(info for info in list_keys(tuf_dir) if info.role == role)


def _tuf_dir(tuf_dir: Path | None, data_dir: Path) -> Path:
    return tuf_dir or data_dir / "registry" / "tuf"


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
    try:
        _print_keys(init_keys(_tuf_dir(tuf_dir, data_dir)), as_json)
    except KeyManagementError as e:
        raise fail(str(e)) from None


@app.command("list")
def list_command(tuf_dir: TufDir = None, data_dir: DataDir = default_data_dir(), as_json: JsonFlag = False) -> None:
    """Show each role's key id, scheme, file mode and whether the current root trusts it."""
    try:
        _print_keys(list_keys(_tuf_dir(tuf_dir, data_dir)), as_json)
    except KeyManagementError as e:
        raise fail(str(e)) from None


@app.command("rotate")
def rotate_command(
    role: Annotated[str, typer.Argument(help="Role whose key to replace: root, targets, snapshot or timestamp.")],
    tuf_dir: TufDir = None,
    data_dir: DataDir = default_data_dir(),
    as_json: JsonFlag = False,
) -> None:
    """Replace a role's key and publish a new root, signed so devices follow the rotation."""
    try:
        info = rotate_key(_tuf_dir(tuf_dir, data_dir), role)
    except (KeyManagementError, ValueError) as e:
        raise fail(str(e)) from None
    if as_json:
        emit_json(asdict(info))
    else:
        console.print(f"rotated {info.role}: new key {info.keyid} ({info.scheme}, mode {info.mode})")
