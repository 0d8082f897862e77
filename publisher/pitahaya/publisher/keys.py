"""Signing key files: ed25519 private keys (PEM, mode 0600) and their public halves (PEM).

A publisher creates its key pair once (`create_key_pair`, what ``pitahaya keys
publisher-init`` runs), keeps the private half, and gives the public half to the registry's
admin, who delegates a scene to it (`load_public_key`). Each push of that scene is then
signed with the private half (`load_private_key`, passed to `RegistryClient.push`)::

    signer = create_key_pair(Path("publisher.pem"), Path("publisher.pub.pem"))
    client.push(archive, signers=[load_private_key(Path("publisher.pem"))])

The registry's own role keys use the same format and these same functions, so every tool
reads them alike and refuses a private key that other users can read.
"""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from pitahaya.client_runtime.files import write_atomic
from pitahaya.publisher.errors import SigningKeyError

#: A private key file's mode: readable and writable by its owner only.
KEY_FILE_MODE = 0o600


def load_private_key(path: Path) -> CryptoSigner:
    """The signer in a PEM key file, refusing missing, group/world-accessible or non-key files.

    Raises:
        SigningKeyError: what is wrong with the file, and how to fix it.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise SigningKeyError(f"no key file {path}: create it or restore it from backup") from None
    if mode & 0o077:
        raise SigningKeyError(f"key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})")
    try:
        return CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"key file {path} is not an unencrypted PEM private key: {e}") from e


def load_public_key(path: Path) -> Key:
    """The TUF public key in a PEM file (a ``*.pub.pem`` from `create_key_pair`).

    Raises:
        SigningKeyError: the file is missing or not a PEM public key.
    """
    try:
        return SSlibKey.from_crypto(load_pem_public_key(path.read_bytes()))
    except FileNotFoundError:
        raise SigningKeyError(f"no public key file {path}") from None
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path} is not a PEM public key: {e}") from e


def create_key_pair(private_path: Path, public_path: Path) -> CryptoSigner:
    """Generate an ed25519 key: the private half 0600 (never wider), the public half 0644.

    Returns:
        The new key's signer (``signer.public_key.keyid`` is what the delegation lists).

    Raises:
        SigningKeyError: a file already exists (a key is never overwritten).
        OSError: a file could not be written (nothing is left half-written).
    """
    for path in (private_path, public_path):
        if path.exists():
            raise SigningKeyError(f"{path} exists; refusing to overwrite a key (choose another --out)")
    signer = CryptoSigner.generate_ed25519()
    private = load_pem_private_key(signer.private_bytes, password=None)
    public_pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_atomic(private_path, signer.private_bytes, mode=KEY_FILE_MODE)
    write_atomic(public_path, public_pem, mode=0o644)
    return signer
