"""Offline maintenance a registry operator runs from the command line (``pitahaya registry migrate``,
``pitahaya registry gc``).

These open the registry's storage from `Settings` directly (no running server needed) and
take the publish lock where they touch what publishes write, so they are safe next to a
running registry on the same data dir.
"""

from __future__ import annotations

from datetime import timedelta

from pitahaya.registry.blobs import open_blob_store
from pitahaya.registry.db import session_factory, upgrade_to_head
from pitahaya.registry.services.blob_gc import GcResult, collect_orphan_blobs
from pitahaya.registry.settings import Settings
from pitahaya.registry.storage import open_database


def collect_garbage(settings: Settings, *, min_age_seconds: float | None = None, dry_run: bool = False) -> GcResult:
    """Delete orphan blobs (stored bytes no package or release refers to) and the temp files
    of blob writes a killed process left.

    Args:
        settings: The registry's settings (database, blob store, TUF folder for the lock).
        min_age_seconds: Keep orphans and temp files younger than this (default
            ``blob_gc_min_age_seconds``), since a push in flight has written its blob but not
            yet committed its row, or is still writing it.
        dry_run: Only report what would be deleted.

    Raises:
        StorageUnavailableError: the blob store failed.
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    engine, tuf = open_database(settings)
    try:
        with tuf.publish_lock:
            upgrade_to_head(engine)
        blobs = open_blob_store(settings)
        age = settings.blob_gc_min_age_seconds if min_age_seconds is None else min_age_seconds
        with tuf.publish_lock, session_factory(engine)() as session:
            return collect_orphan_blobs(session=session, blobs=blobs, min_age=timedelta(seconds=age), dry_run=dry_run)
    finally:
        engine.dispose()


def migrate(settings: Settings) -> None:
    """Bring the registry's storage up to this version, then return: apply pending database
    migrations and create the TUF keys and metadata if none exist yet, under the publish lock.

    The server does the same on start; a deployment runs this once before starting replicas (a
    one-shot container, a Kubernetes Job), so a failing migration stops the rollout before any
    replica serves, and replicas do not wait on each other's migration at start.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or migrated.
        ConfigurationError: the existing TUF repository has a layout this version cannot serve.
    """
    engine, tuf = open_database(settings)
    try:
        with tuf.publish_lock:
            upgrade_to_head(engine)
            tuf.initialize()
    finally:
        engine.dispose()
