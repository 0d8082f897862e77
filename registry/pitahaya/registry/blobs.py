"""Content-addressed blob storage for package archives and release documents.

A blob is named by the sha256 of its bytes, so it is immutable and can be cached forever.
Workflow: a service calls `BlobStore.put` *before* committing the database row that refers
to the digest, so a committed row always points at a complete, verified blob (a crash in
between leaves at most an unreferenced blob, never a dangling row).

`BlobStore` implements the rules once (hashing, read-back verification, idempotence,
garbage collection); a backend subclass supplies only the primitives `_exists`, `_write`,
`_read`, `_delete`, `_list` and `_check`, and, if its writes can leave partial files behind
when a process dies mid-write, `_list_partial` and `_delete_partial`. `LocalBlobStore` keeps blobs under
``<root>/sha256/ab/cdef...``; `S3BlobStore` under the same key in a bucket (boto3, any
S3-compatible server). Backend failures surface as `StorageUnavailableError` (retry later).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitahaya.client_runtime.files import TEMP_SUFFIX, is_temp_file, write_atomic
from pitahaya.registry._files import PUBLIC_FILE_MODE
from pitahaya.registry.errors import NotFoundError, StorageUnavailableError

if TYPE_CHECKING:
    from pitahaya.registry.settings import Settings

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(sha256: str) -> str:
    """Return ``sha256`` if it is a lowercase hex sha256 digest, else raise ValueError.

    Digests become file and object names, so anything else must never reach a backend.
    """
    if not _SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


class BlobStore(ABC):
    """Immutable, content-addressed bytes. Subclasses implement the primitives."""

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its sha256 hex digest.

        The blob is complete and verified (read back and hashed) when this returns. An
        existing blob is written again (same bytes, atomically): that refreshes its
        modification time, so garbage collection's grace period protects it while the
        caller commits the row that will refer to it.

        Raises:
            StorageUnavailableError: the backend failed, or the bytes did not read back intact.
        """
        digest = sha256_hex(data)
        self._write(digest, data)
        if sha256_hex(self._read(digest)) != digest:
            raise StorageUnavailableError(f"blob {digest} did not read back intact after writing")
        return digest

    def get(self, sha256: str) -> bytes:
        """Return the bytes of a blob, verified against its name.

        Raises:
            NotFoundError: no blob with that digest.
            RuntimeError: the stored bytes no longer match their digest (storage corruption).
        """
        data = self._read(check_digest(sha256))
        if sha256_hex(data) != sha256:
            raise RuntimeError(f"blob {sha256} is corrupt in storage")
        return data

    def verify(self, sha256: str) -> bool:
        """Whether the blob exists and its bytes still hash to its name."""
        try:
            self.get(sha256)
        except (NotFoundError, RuntimeError):
            return False
        return True

    def exists(self, sha256: str) -> bool:
        return self._exists(check_digest(sha256))

    def delete(self, sha256: str) -> None:
        """Remove a blob (missing is fine). Only garbage collection calls this."""
        self._delete(check_digest(sha256))

    def list(self) -> Iterator[tuple[str, datetime]]:
        """Every stored blob as ``(sha256, last modified, UTC)``, in no particular order."""
        return self._list()

    def check(self) -> None:
        """Raise `StorageUnavailableError` unless the backend is reachable and writable."""
        self._check()

    def list_partial(self) -> Iterator[tuple[str, datetime]]:
        """Partial writes a killed process left (or a write in flight is making), as
        ``(name, last modified, UTC)``; only garbage collection reads this."""
        return self._list_partial()

    def delete_partial(self, name: str) -> None:
        """Remove a partial write `list_partial` named (missing is fine)."""
        self._delete_partial(name)

    def _list_partial(self) -> Iterator[tuple[str, datetime]]:
        """Backends whose writes appear all at once (S3's ``put_object``) leave no partial files."""
        return iter(())

    def _delete_partial(self, name: str) -> None:
        raise ValueError(f"{type(self).__name__} has no partial writes, so none named {name!r}")

    @abstractmethod
    def _exists(self, sha256: str) -> bool:
        """Whether a blob is stored under this (already validated) digest."""

    @abstractmethod
    def _write(self, sha256: str, data: bytes) -> None:
        """Store ``data`` atomically under ``sha256``: readers never see partial content."""

    @abstractmethod
    def _read(self, sha256: str) -> bytes:
        """Return the stored bytes, or raise `NotFoundError`."""

    @abstractmethod
    def _delete(self, sha256: str) -> None:
        """Remove the blob if present."""

    @abstractmethod
    def _list(self) -> Iterator[tuple[str, datetime]]:
        """Yield ``(sha256, last modified)`` for every blob."""

    @abstractmethod
    def _check(self) -> None:
        """Probe the backend; raise `StorageUnavailableError` on failure."""


class LocalBlobStore(BlobStore):
    """Blobs as files ``<root>/sha256/<first two hex digits>/<remaining 62>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """The file that holds (or would hold) a blob."""
        check_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def _exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _write(self, sha256: str, data: bytes) -> None:
        try:
            write_atomic(self.path(sha256), data, mode=PUBLIC_FILE_MODE)
        except OSError as e:  # a full or read-only disk: retry once an operator freed it
            raise StorageUnavailableError(f"cannot write blob {sha256} under {self.root}: {e}") from e

    def _read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as e:
            raise NotFoundError(f"no blob {sha256}") from e

    def _delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def _list(self) -> Iterator[tuple[str, datetime]]:
        for path in (self.root / "sha256").glob("??/*"):
            digest = path.parent.name + path.name
            if _SHA256_RE.match(digest):  # skips the temp files of writes in flight
                yield digest, datetime.fromtimestamp(path.stat().st_mtime, UTC)

    def _list_partial(self) -> Iterator[tuple[str, datetime]]:
        """`write_atomic`'s temp files anywhere under the root (blob folders, the readiness probe)."""
        for path in self.root.rglob(f"*{TEMP_SUFFIX}"):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:  # its write just finished (renamed) or failed (removed)
                continue
            if is_temp_file(path):
                yield str(path.relative_to(self.root)), datetime.fromtimestamp(modified, UTC)

    def _delete_partial(self, name: str) -> None:
        path = self.root / name
        if ".." in Path(name).parts or not is_temp_file(path):
            raise ValueError(f"not a temp file of this blob store: {name!r}")
        path.unlink(missing_ok=True)

    def _check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / ".ready", b"ok", mode=PUBLIC_FILE_MODE)
        except OSError as e:
            raise StorageUnavailableError(f"blob folder {self.root} is not writable: {e}") from e


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix>sha256/<first two hex digits>/<remaining 62>`` in one bucket.

    S3 makes a ``put_object`` visible all at once (never partially), which gives the same
    guarantee as the local store's temp file + rename.

    Args:
        client: A boto3 S3 client (see `S3BlobStore.from_settings`).
        bucket: Bucket name; `ensure_bucket` creates it if missing.
        prefix: Key prefix, e.g. ``"registry-a/"``.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        """A store for ``settings.s3_*`` (boto3's default credential chain when keys are unset)."""
        import boto3
        from botocore.config import Config

        secret = settings.s3_secret_access_key
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
        )
        assert settings.s3_bucket is not None  # callers choose this store only when a bucket is set
        return cls(client, settings.s3_bucket, settings.s3_prefix)

    def key(self, sha256: str) -> str:
        check_digest(sha256)
        return f"{self.prefix}sha256/{sha256[:2]}/{sha256[2:]}"

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (idempotent, safe when workers race)."""
        with _s3_errors("create bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except self._client.exceptions.ClientError as e:
                if _status(e) != 404:
                    raise
                try:
                    self._client.create_bucket(Bucket=self.bucket)
                except (
                    self._client.exceptions.BucketAlreadyOwnedByYou,
                    self._client.exceptions.BucketAlreadyExists,
                ):
                    pass  # another worker created it first

    def _exists(self, sha256: str) -> bool:
        with _s3_errors(f"stat blob {sha256}"):
            try:
                self._client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            except self._client.exceptions.ClientError as e:
                if _status(e) == 404:
                    return False
                raise
            return True

    def _write(self, sha256: str, data: bytes) -> None:
        with _s3_errors(f"upload blob {sha256}"):
            self._client.put_object(
                Bucket=self.bucket, Key=self.key(sha256), Body=data, ContentType="application/octet-stream"
            )

    def _read(self, sha256: str) -> bytes:
        with _s3_errors(f"download blob {sha256}"):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=self.key(sha256))
            except self._client.exceptions.NoSuchKey as e:
                raise NotFoundError(f"no blob {sha256}") from e
            data: bytes = response["Body"].read()
            return data

    def _delete(self, sha256: str) -> None:
        with _s3_errors(f"delete blob {sha256}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def _list(self) -> Iterator[tuple[str, datetime]]:
        with _s3_errors("list blobs"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}sha256/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    digest = "".join(item["Key"].rsplit("/", 2)[-2:])
                    if _SHA256_RE.match(digest):
                        yield digest, item["LastModified"]

    def _check(self) -> None:
        with _s3_errors("reach the bucket"):
            self._client.head_bucket(Bucket=self.bucket)


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Translate botocore failures (other than those handled inline) into `StorageUnavailableError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as e:
        raise StorageUnavailableError(f"S3 failed to {what}: {e}") from e


def _status(error: Any) -> int | None:
    """The HTTP status of a botocore ClientError."""
    status: int | None = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store ``settings`` ask for: S3 when ``s3_bucket`` is set, else the local folder."""
    if settings.s3_bucket:
        store = S3BlobStore.from_settings(settings)
        store.ensure_bucket()
        return store
    return LocalBlobStore(settings.resolved_blob_dir)
