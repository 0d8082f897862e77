"""API tokens with roles, release targeting and pause, telemetry aggregates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("platforms", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("app_version_min", sa.String(32), nullable=True))
        batch.add_column(sa.Column("app_version_max", sa.String(32), nullable=True))
        batch.add_column(sa.Column("operation", sa.String(32), nullable=False, server_default="create"))
    op.create_table(
        "telemetry_counters",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scene", sa.String(64), nullable=False),
        sa.Column("package_version", sa.String(32), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.UniqueConstraint("scene", "package_version", "minute", "metric", "key", name="uq_telemetry"),
    )
    op.create_index("ix_telemetry_counters_minute", "telemetry_counters", ["minute"])
    op.create_table(
        "telemetry_devices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scene", sa.String(64), nullable=False),
        sa.Column("package_version", sa.String(32), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.UniqueConstraint("scene", "package_version", "minute", "device_id", name="uq_telemetry_devices"),
    )


def downgrade() -> None:
    op.drop_table("telemetry_devices")
    op.drop_index("ix_telemetry_counters_minute", table_name="telemetry_counters")
    op.drop_table("telemetry_counters")
    with op.batch_alter_table("releases") as batch:
        for column in ("operation", "app_version_max", "app_version_min", "platforms", "paused"):
            batch.drop_column(column)
    op.drop_table("api_tokens")
