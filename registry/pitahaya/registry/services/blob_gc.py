"""Garbage collection of orphan blobs: stored bytes that no committed row refers to.

A push writes (and verifies) its blob before committing the row, so a crash or a failed
transaction in between leaves an orphan, never a dangling row. `collect_orphan_blobs` finds
blobs referenced by no package and no release and deletes those older than ``min_age``:
a younger orphan may belong to a push still in flight on another worker or host.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pitahaya.registry.blobs import BlobStore
from pitahaya.registry.models import PackageRow, ReleaseRow, utcnow


@dataclass(frozen=True)
class GcResult:
    """What a collection did: orphans deleted, and orphans kept because they are too young."""

    deleted: list[str]
    kept_young: list[str]


def collect_orphan_blobs(
    *, session: Session, blobs: BlobStore, min_age: timedelta, dry_run: bool = False, now: datetime | None = None
) -> GcResult:
    """Delete blobs that no package or release refers to and that are older than ``min_age``.

    Args:
        min_age: Grace period for pushes in flight.
        dry_run: Report what would be deleted, delete nothing.
        now: The current time (a seam for tests).
    """
    referenced = set(session.scalars(select(PackageRow.sha256)))
    referenced |= {sha for sha in session.scalars(select(ReleaseRow.sha256)) if sha is not None}
    cutoff = (now or utcnow()) - min_age
    deleted: list[str] = []
    kept: list[str] = []
    for sha256, modified in blobs.list():
        if sha256 in referenced:
            continue
        if modified > cutoff:
            kept.append(sha256)
            continue
        if not dry_run:
            blobs.delete(sha256)
        deleted.append(sha256)
    return GcResult(deleted=sorted(deleted), kept_young=sorted(kept))
