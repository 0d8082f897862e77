"""Garbage collection of orphan blobs (stored bytes no committed row refers to) and of the
temp files of blob writes a killed process never finished.

A push writes (and verifies) its blob before committing the row, so a crash or a failed
transaction in between leaves an orphan, never a dangling row; a process killed in the middle
of writing a blob leaves the write's temp file. `collect_orphan_blobs` finds both and deletes
those older than ``min_age``: a younger one may belong to a push still in flight on another
worker or host. A write in flight keeps its temp file's modification time fresh, and one that
stalls past ``min_age`` and loses its temp file fails its rename: its push is refused, nothing
half-written is ever named by a digest. (The caller also holds the publish lock, which every
push and release holds while it writes its blob.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.clock import utcnow
from pitahaya.registry.models import PackageRow, ReleaseRow


@dataclass(frozen=True)
class GcResult:
    """What a collection did: orphans (by sha256) and temp files (by path under the blob store)
    deleted, and those kept because they are too young."""

    deleted: list[str]
    kept_young: list[str]
    deleted_temp_files: list[str]
    kept_young_temp_files: list[str]


def collect_orphan_blobs(
    *, session: Session, blobs: BlobStore, min_age: timedelta, dry_run: bool = False, now: datetime | None = None
) -> GcResult:
    """Delete blobs that no package or release refers to, and temp files of unfinished blob
    writes, older than ``min_age``.

    Args:
        min_age: Grace period for pushes in flight.
        dry_run: Report what would be deleted, delete nothing.
        now: The current time (a seam for tests).
    """
    referenced = set(session.scalars(select(PackageRow.sha256)))
    referenced |= {sha for sha in session.scalars(select(ReleaseRow.sha256)) if sha is not None}
    cutoff = (now or utcnow()) - min_age
    orphans = ((sha256, modified) for sha256, modified in blobs.list() if sha256 not in referenced)
    deleted, kept = _collect(orphans, cutoff, None if dry_run else blobs.delete)
    deleted_temp, kept_temp = _collect(blobs.list_partial(), cutoff, None if dry_run else blobs.delete_partial)
    return GcResult(deleted=deleted, kept_young=kept, deleted_temp_files=deleted_temp, kept_young_temp_files=kept_temp)


def _collect(
    found: Iterable[tuple[str, datetime]], cutoff: datetime, delete: Callable[[str], None] | None
) -> tuple[list[str], list[str]]:
    """Split ``found`` at ``cutoff`` into (deleted, kept young), deleting the old unless ``delete`` is None."""
    deleted: list[str] = []
    kept: list[str] = []
    for name, modified in found:
        if modified > cutoff:
            kept.append(name)
            continue
        if delete is not None:
            delete(name)
        deleted.append(name)
    return sorted(deleted), sorted(kept)
