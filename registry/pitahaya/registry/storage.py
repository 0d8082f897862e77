"""Opening the registry's state from `Settings`: the database and the TUF repository over it.

The server, ``pitahaya registry migrate`` and ``pitahaya registry gc`` open them the same way,
so all three take the same publish lock over the same metadata.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from pitahaya.registry.db import create_engine_for
from pitahaya.registry.settings import Settings
from pitahaya.registry.tuf import TufRepository


def open_database(settings: Settings, *, offline_keys_dir: Path | None = None) -> tuple[Engine, TufRepository]:
    """The registry's engine, and its TUF repository with the metadata where ``tuf_storage`` says.

    Nothing is read or migrated yet; callers migrate under ``tuf.publish_lock``.

    Args:
        settings: The registry's settings.
        offline_keys_dir: Where the offline keys are, for an admin's operations (see `TufRepository`).
    """
    engine = create_engine_for(settings.resolved_database_url)
    database = engine if settings.tuf_storage == "database" else None
    return engine, TufRepository(settings.resolved_tuf_dir, offline_keys_dir=offline_keys_dir, database=database)
