"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from pitahaya.registry.db import alembic_config, create_engine_for, upgrade_to_head
from pitahaya.registry.models import Base


def test_upgrade_head_matches_the_models_and_is_rerunnable(database_url: str) -> None:
    engine = create_engine_for(database_url)
    upgrade_to_head(engine)
    upgrade_to_head(engine)

    assert set(inspect(engine).get_table_names()) == {
        "alembic_version",
        "packages",
        "releases",
        "audit_log",
        "api_tokens",
        "telemetry_counters",
        "telemetry_devices",
        "rollout_gates",
        "telemetry_batches",
        "tuf_metadata",
        "tuf_pending_publication",
    }
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_migrations_have_a_single_head(database_url: str) -> None:
    engine = create_engine_for(database_url)
    assert ScriptDirectory.from_config(alembic_config(engine)).get_heads() == ["0004"]
    engine.dispose()
