"""Package archives the packager would never write, for tests of what readers refuse.

`build_archive` serializes a `Manifest` itself, so it cannot produce a manifest nested 200k
levels deep or padded past the format's limit; `archive_with_manifest` packs any bytes as
``manifest.json``.
"""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Mapping

from pitahaya.client_runtime.package import MANIFEST


def archive_with_manifest(manifest: bytes, files: Mapping[str, bytes]) -> bytes:
    """A ``.tar.xz`` holding ``manifest`` as ``manifest.json`` and ``files`` as they are."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in {MANIFEST: manifest, **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return lzma.compress(raw.getvalue(), format=lzma.FORMAT_XZ)


def nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` levels deep."""
    return b"[" * depth + b"]" * depth


def with_member(manifest: bytes, key: str, value: bytes) -> bytes:
    """``manifest`` (a JSON object) with ``"key": value`` added first, ``value`` as raw JSON text."""
    return manifest.replace(b"{", b'{"' + key.encode() + b'": ' + value + b", ", 1)
