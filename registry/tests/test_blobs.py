"""The content-addressed blob store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pitahaya.registry.blobs import LocalBlobStore
from pitahaya.registry.errors import NotFoundError


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    digest = store.put(b"hello")

    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.put(b"hello") == digest
    assert store.path(digest) == tmp_path / "sha256" / digest[:2] / digest[2:]
    assert store.get(digest) == b"hello" and store.exists(digest)
    assert [p.name for p in store.path(digest).parent.iterdir()] == [digest[2:]]  # no temp files left


def test_missing_corrupt_and_malformed_digests(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(NotFoundError):
        store.get("0" * 64)
    with pytest.raises(ValueError):
        store.get("../../etc/passwd")
    digest = store.put(b"hello")
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="corrupt"):
        store.get(digest)
