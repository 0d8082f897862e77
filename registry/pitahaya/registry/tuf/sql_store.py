"""The signed metadata as rows of the registry's database, so replicas that share no disk serve
one version chain (``tuf_storage = "database"``).

Each served version is a row of ``tuf_metadata`` keyed by (role, version); a publication stages
its versions unpublished, with its journal in ``tuf_pending_publication``, and applying it
publishes them and drops the journal in one transaction, so a replica reading at any moment
sees either the whole publication or none of it. Published versions never change, so every
replica caches them by name for good. The one moving part, which version of ``timestamp``
(and of ``root``, for ``root.json``) is newest, is read from the database for every answer with
a body, so a device polling several replicas never sees the chain go back; a poll whose ETag
names the version this replica read in the last `NOT_MODIFIED_FRESHNESS_S` is answered 304
without a query (the device keeps what it has; it sees a newer version at most that much later).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Root, Timestamp

from pitahaya.registry.errors import NotFoundError
from pitahaya.registry.models import TufMetadataRow, TufPendingPublication
from pitahaya.registry.tuf.roles import METADATA_NAME_RE
from pitahaya.registry.tuf.staging import StagedPublication, Staging
from pitahaya.registry.tuf.store import FileMetadataStore, MetadataStore

_VERSIONED_NAME_RE = re.compile(r"^([1-9][0-9]*)\.(.+)\.json$")

#: Published versions kept in memory per process (each is a few KiB; devices mostly ask for
#: the newest few).
CACHED_VERSIONS = 256

#: How long a replica answers "not modified" to a device that holds the timestamp (or root) the
#: replica last read, without asking the database again. It only delays by this much when that
#: device sees a newer version; a 200 always carries the newest, so no device ever receives an
#: older version than one it holds, whichever replica it asks.
NOT_MODIFIED_FRESHNESS_S = 1.0

#: The journal's one row.
_JOURNAL_ID = 1


class SqlMetadataStore(MetadataStore):
    """The signed metadata in ``tuf_metadata``.

    Args:
        engine: The registry's database (SQLite or PostgreSQL).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._cache: OrderedDict[tuple[str, int], tuple[bytes, str]] = OrderedDict()
        self._newest_read: dict[str, tuple[str, float]] = {}  # moving name -> (sha256, when read)

    def __str__(self) -> str:
        return f"the tuf_metadata table of {self._engine.url.render_as_string(hide_password=True)}"

    def file(self, name: str) -> tuple[bytes, str]:
        """See `MetadataStore.file`: one indexed query for ``timestamp.json`` or ``root.json``
        (which version is newest), none for a version already cached."""
        if not METADATA_NAME_RE.match(name):
            raise NotFoundError(f"no TUF metadata named {name!r}")
        moving = name in ("root.json", "timestamp.json")
        if moving:
            role = name.removesuffix(".json")
            version = self._newest(role)
            if version is None:
                raise NotFoundError(f"no TUF metadata named {name!r}")
        else:
            match = _VERSIONED_NAME_RE.match(name)
            assert match is not None  # METADATA_NAME_RE matched
            version, role = int(match.group(1)), match.group(2)
        answer = self._version(name, role, version)
        if moving:
            self._newest_read[name] = (answer[1], self._clock())
        return answer

    def recent_digest(self, name: str) -> str | None:
        """The sha256 this replica read for ``timestamp.json`` or ``root.json`` less than
        `NOT_MODIFIED_FRESHNESS_S` ago: a poll whose ETag names it is answered 304 without a query."""
        read = self._newest_read.get(name)
        if read is None or self._clock() - read[1] >= NOT_MODIFIED_FRESHNESS_S:
            return None
        return read[0]

    def _version(self, name: str, role: str, version: int) -> tuple[bytes, str]:
        key = (role, version)
        if (cached := self._cache.get(key)) is not None:
            return cached
        with self._engine.connect() as connection:
            row = connection.execute(
                select(TufMetadataRow.data, TufMetadataRow.sha256).where(
                    TufMetadataRow.role == role, TufMetadataRow.version == version, TufMetadataRow.published
                )
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no TUF metadata named {name!r}")
        answer = (bytes(row.data), row.sha256)
        self._cache[key] = answer
        while len(self._cache) > CACHED_VERSIONS:
            self._cache.popitem(last=False)
        return answer

    def is_initialized(self) -> bool:
        return self._newest(Root.type) is not None

    def root_version(self) -> int:
        version = self._newest(Root.type)
        if version is None:
            raise NotFoundError(f"the TUF repository is not initialized (no root in {self})")
        return version

    def write(self, changes: Mapping[str, Metadata[Any]]) -> None:
        """Publish the versions in one transaction (their order does not matter to readers)."""
        with Session(self._engine) as session, session.begin():
            session.add_all(_rows(changes, published=True))
            session.flush()
            _drop_old_timestamps(session)

    def import_files(self, files: FileMetadataStore) -> int:
        """Publish every version a file store serves (a registry moving its metadata into the
        database); returns how many. The caller holds the publish lock over both."""
        with Session(self._engine) as session, session.begin():
            names = [p.name for p in files.metadata_dir.iterdir() if METADATA_NAME_RE.match(p.name)]
            for name in names:
                md = Metadata.from_bytes(files.file(name)[0])
                session.add(_row(Timestamp.type if name == "timestamp.json" else _role_of(name), md, published=True))
            return len(names)

    def _newest(self, role: str) -> int | None:
        with self._engine.connect() as connection:
            return connection.scalar(
                select(func.max(TufMetadataRow.version)).where(TufMetadataRow.role == role, TufMetadataRow.published)
            )


class SqlStaging(Staging):
    """A publication staged as unpublished ``tuf_metadata`` rows and its journal row."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __str__(self) -> str:
        return f"the tuf_pending_publication table of {self._engine.url.render_as_string(hide_password=True)}"

    def pending(self) -> StagedPublication | None:
        with Session(self._engine) as session:
            journal = session.get(TufPendingPublication, _JOURNAL_ID)
            if journal is None:
                return None
            return StagedPublication(self, tuple(journal.files), dict(journal.targets))

    def _stage(self, changes: Mapping[str, Metadata[Any]], names: list[str], targets: dict[str, str]) -> None:
        with Session(self._engine) as session, session.begin():
            session.add_all(_rows(changes, published=False))
            session.add(TufPendingPublication(id=_JOURNAL_ID, files=names, targets=targets))

    def apply(self, files: tuple[str, ...]) -> None:
        """Publish every staged row and drop the journal, in one transaction (idempotent)."""
        with Session(self._engine) as session, session.begin():
            session.execute(update(TufMetadataRow).where(~TufMetadataRow.published).values(published=True))
            _drop_old_timestamps(session)
            session.execute(delete(TufPendingPublication))

    def clear(self) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(delete(TufPendingPublication))
            session.execute(delete(TufMetadataRow).where(~TufMetadataRow.published))


def _rows(changes: Mapping[str, Metadata[Any]], *, published: bool) -> list[TufMetadataRow]:
    return [_row(role, md, published=published) for role, md in changes.items()]


def _row(role: str, md: Metadata[Any], *, published: bool) -> TufMetadataRow:
    data = md.to_bytes()
    return TufMetadataRow(
        role=role, version=md.signed.version, data=data, sha256=hashlib.sha256(data).hexdigest(), published=published
    )


def _role_of(name: str) -> str:
    match = _VERSIONED_NAME_RE.match(name)
    assert match is not None
    return match.group(2)


def _drop_old_timestamps(session: Session) -> None:
    """Keep only the newest published timestamp: devices never ask for an older one."""
    newest = select(func.max(TufMetadataRow.version)).where(
        TufMetadataRow.role == Timestamp.type, TufMetadataRow.published
    )
    session.execute(
        delete(TufMetadataRow).where(
            TufMetadataRow.role == Timestamp.type,
            TufMetadataRow.published,
            TufMetadataRow.version < newest.scalar_subquery(),
        )
    )
