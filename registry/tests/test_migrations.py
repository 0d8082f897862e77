"""The Alembic migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pitahaya.registry.db import create_engine_for, upgrade_to_head
from pitahaya.registry.models import Base


def test_upgrade_head_matches_the_models_and_is_rerunnable(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'sub' / 'registry.db'}")
    upgrade_to_head(engine)
    upgrade_to_head(engine)

    assert set(inspect(engine).get_table_names()) == {"alembic_version", "packages", "releases", "audit_log"}
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
