"""Alembic environment for the registry schema.

``pitahaya.registry.db.upgrade_to_head`` passes its engine in ``config.attributes["engine"]``.
Run from the command line (e.g. ``alembic revision --autogenerate`` with ``-c`` pointing at
an ini whose ``script_location`` is this folder), the URL comes from the registry `Settings`
(``PITAHAYA_DATABASE_URL`` / ``PITAHAYA_DATA_DIR``), the same way the server finds it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from pitahaya.registry.db import create_engine_for
from pitahaya.registry.models import Base
from pitahaya.registry.settings import load_settings

target_metadata = Base.metadata


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    return engine if engine is not None else create_engine_for(load_settings().resolved_database_url)


def run_migrations_online() -> None:
    """Migrate over a live connection; batch mode so SQLite can alter tables later."""
    with _engine().connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
