"""Where event logs come from: a local file, a local glob, or S3 (an object or a glob of keys).

`resolve_sources` turns what the user typed into a sorted list of `EventSource` objects.
Each source implements one primitive, `EventSource._read`; the base class's `read_bytes`
wraps every failure of the storage layer (missing file, denied bucket, endpoint down) into
`EventLogError` naming the source, so callers see one error type whatever the backend.

S3 uses boto3 and its standard configuration (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, profiles), plus
``PITAHAYA_S3_ENDPOINT_URL`` for an S3-compatible server such as SeaweedFS or MinIO.
"""

from __future__ import annotations

import abc
import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitahaya.training.errors import EventLogError

#: Environment variable naming an S3-compatible endpoint (overrides ``AWS_ENDPOINT_URL``).
S3_ENDPOINT_ENV = "PITAHAYA_S3_ENDPOINT_URL"
_WILDCARDS = "*?["


class EventSource(abc.ABC):
    """One event log file, wherever it lives; ``name`` is what errors and reports show."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The file's path or URL."""

    def read_bytes(self) -> bytes:
        """The file's raw bytes.

        Raises:
            EventLogError: the file cannot be fetched.
        """
        try:
            return self._read()
        except EventLogError:
            raise
        except Exception as e:  # storage errors of any backend: OSError, botocore errors
            raise EventLogError(self.name, None, f"cannot read: {type(e).__name__}: {e}") from e

    @abc.abstractmethod
    def _read(self) -> bytes:
        """Fetch the bytes; any exception is wrapped by `read_bytes`."""


@dataclass(frozen=True)
class LocalSource(EventSource):
    path: Path

    @property
    def name(self) -> str:
        return str(self.path)

    def _read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class S3Source(EventSource):
    bucket: str
    key: str
    client: Any  # a boto3 S3 client

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _read(self) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()


def s3_client_from_env() -> Any:
    """A boto3 S3 client configured from the standard AWS variables and `S3_ENDPOINT_ENV`."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    # A fresh session: boto3's default one caches credentials from its first use.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=os.environ.get(S3_ENDPOINT_ENV) or None, region_name=region)


def resolve_sources(spec: str | Path, *, s3_client: Any = None) -> list[EventSource]:
    """The files an event-log spec names, sorted by name.

    Args:
        spec: A local path, a local glob (``logs/*.parquet``), ``s3://bucket/key`` or
            ``s3://bucket/prefix/*.csv.gz``.
        s3_client: boto3 S3 client to use; None builds one with `s3_client_from_env`.

    Raises:
        EventLogError: nothing matches the spec, or the bucket cannot be listed.
    """
    text = str(spec)
    if text.startswith("s3://"):
        return _resolve_s3(text, s3_client or s3_client_from_env())
    if any(c in text for c in _WILDCARDS):
        paths = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not paths:
            raise EventLogError(text, None, "no file matches this pattern")
        return [LocalSource(Path(p)) for p in paths]
    path = Path(text)
    if not path.is_file():
        raise EventLogError(text, None, "no such file")
    return [LocalSource(path)]


def _resolve_s3(uri: str, client: Any) -> list[EventSource]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise EventLogError(uri, None, "expected s3://bucket/key")
    if not any(c in key for c in _WILDCARDS):
        return [S3Source(bucket, key, client)]
    prefix = key[: min(key.find(c) for c in _WILDCARDS if c in key)]
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = sorted(
            o["Key"] for page in pages for o in page.get("Contents", []) if fnmatch.fnmatchcase(o["Key"], key)
        )
    except Exception as e:  # botocore errors: denied, no such bucket, endpoint down
        raise EventLogError(uri, None, f"cannot list: {type(e).__name__}: {e}") from e
    if not keys:
        raise EventLogError(uri, None, "no object matches this pattern")
    return [S3Source(bucket, k, client) for k in keys]
