"""Database engine, sessions and migrations.

Workflow: ``create_app`` calls `create_engine_for` with the configured URL, then
`upgrade_to_head` (Alembic ``upgrade head``, programmatically, so a fresh data dir and an
old one both end up on the current schema), then hands `session_factory` to the routes.
The schema is only ever created by migrations, never by ``metadata.create_all``, so a
database made by tests looks exactly like one made in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

ALEMBIC_DIR = Path(__file__).with_name("alembic")


def create_engine_for(url: str) -> Engine:
    """Create an engine; for SQLite, make the folder, enable WAL and foreign keys.

    WAL lets readers (device-facing GETs) proceed while a publish holds the write lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at the packaged migrations, bound to ``engine``."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending migration (``alembic upgrade head``)."""
    command.upgrade(alembic_config(engine), "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit, so routes can serialize results."""
    return sessionmaker(bind=engine, expire_on_commit=False)
