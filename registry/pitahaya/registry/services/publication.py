"""Committing rows and publishing their signed TUF metadata as one step: both or neither.

Why two phases. The database and the TUF metadata are two stores with no shared
transaction. Signing before the commit left, when the commit failed (a full disk under
SQLite), a signed target with no row: devices saw a package the registry answers 404 for.
Committing before signing leaves the reverse, a published row devices never see, and a
retried push refused as a duplicate. So every publish runs, under the publish lock:

1. **prepare**: the service flushes its rows, then `TufRepository.stage_targets` (or
   `PublisherDelegations.stage`) signs the new metadata into ``<tuf_dir>/staging/``, which nothing
   serves, ending with a journal of the targets it adds. Everything that needs disk space is
   written here; a failure rolls the transaction back and removes the staged files.
2. **commit** the transaction: the database is the record of the decision. A failure
   discards the staged files: nothing happened.
3. **apply**: rename the staged files into ``metadata/``, ``timestamp.json`` last. Renames
   need no new space.

A crash (or an I/O error) between 2 and 3 leaves a journal whose rows are committed; one
between 1 and 2 leaves a journal whose rows are not. `publishing` runs `recover_publication`
before anything else under the lock, and the server runs it at start: a journal whose every
target resolves to a committed row is applied (roll forward: the very bytes that were
signed, so a publisher's signature over its delegated role stays valid), any other is
discarded (roll back). A full disk or a failing database is a `StorageUnavailableError`
(503): free space, then the same request succeeds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.errors import NotFoundError, StorageUnavailableError
from pitahaya.registry.services.targets import get_target_sha256
from pitahaya.registry.tuf import StagedPublication, TufRepository

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublicationStore:
    """Where a publication is written: the database session, the blob store and the TUF repository.

    Services that publish (a push, a release) take one rather than the three apart; the API
    builds it per request (``StoreDep``), the gate loop from its own session.
    """

    session: Session
    blobs: BlobStore
    tuf: TufRepository


@contextlib.contextmanager
def publishing(*, session: Session, tuf: TufRepository) -> Iterator[None]:
    """Hold the publish lock, after finishing or undoing a publication left staged.

    Recovery runs first, on a session with nothing flushed, so it judges only committed rows.
    """
    with tuf.publish_lock:
        recover_publication(session=session, tuf=tuf)
        yield


def commit_and_publish(*, session: Session, stage: Callable[[], StagedPublication]) -> None:
    """Stage the signed metadata (``stage``), commit ``session``, then make the metadata visible.

    The caller holds `publishing` and has flushed its rows.

    Raises:
        StorageUnavailableError: the disk or the database failed (nothing was published).
    """
    with _undone_on_failure(session.rollback):
        staged = stage()
    with _undone_on_failure(session.rollback, staged.discard):
        session.commit()
    staged.apply()


def recover_publication(*, session: Session, tuf: TufRepository) -> str | None:
    """Apply the staged publication if its rows were committed, else discard it.

    Returns:
        ``"applied"`` or ``"discarded"``, or None when nothing was staged.
    """
    with tuf.publish_lock:
        staged = tuf.pending_publication()
        if staged is None:
            return None
        if all(_committed(session, path, sha256) for path, sha256 in staged.targets.items()):
            staged.apply()
            outcome = "applied"
        else:
            staged.discard()
            outcome = "discarded"
        logger.warning("recovered a staged TUF publication of %s: %s", sorted(staged.targets), outcome)
        return outcome


def refresh_signatures(*, session: Session, tuf: TufRepository) -> list[str]:
    """`TufRepository.refresh` after recovery: re-signing over a staged publication would fork it."""
    with publishing(session=session, tuf=tuf):
        return tuf.refresh()


def _committed(session: Session, path: str, sha256: str) -> bool:
    try:
        get_target_sha256(session=session, target_path=path, sha256=sha256)
    except NotFoundError:
        return False
    return True


@contextlib.contextmanager
def _undone_on_failure(*undo: Callable[[], None]) -> Iterator[None]:
    """Run ``undo`` if the block raises; a disk or database failure becomes `StorageUnavailableError`."""
    try:
        yield
    except BaseException as e:
        for step in undo:
            step()
        if isinstance(e, OSError | OperationalError):
            raise StorageUnavailableError(
                f"the registry could not store the publication, nothing was published: {e}"
            ) from e
        raise
