"""Layered rollouts (``releases.earlier``), quality gates (``rollout_gates``), per-device tallies,
telemetry batch ids (``telemetry_batches``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEVICE_TALLIES = (
    "inferences",
    "fallbacks",
    "timeouts",
    "outcomes",
    "abs_error_sum_s",
    "abs_error_sq_sum_s2",
    "latency_sum_us",
    "latency_sq_sum_us2",
)


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("earlier", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "rollout_gates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scene", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("package_version", sa.String(32), nullable=False),
        sa.Column("baseline_versions", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_inferences", sa.Float(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_rollout_gates_scene_channel", "rollout_gates", ["scene", "channel"])
    op.create_index("ix_rollout_gates_state", "rollout_gates", ["state"])
    op.create_table(
        "telemetry_batches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("device_id", "batch_id", name="uq_telemetry_batches"),
    )
    op.create_index("ix_telemetry_batches_received_at", "telemetry_batches", ["received_at"])
    with op.batch_alter_table("telemetry_devices") as batch:
        for column in DEVICE_TALLIES:
            batch.add_column(sa.Column(column, sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_index("ix_telemetry_batches_received_at", table_name="telemetry_batches")
    op.drop_table("telemetry_batches")
    with op.batch_alter_table("telemetry_devices") as batch:
        for column in DEVICE_TALLIES:
            batch.drop_column(column)
    op.drop_index("ix_rollout_gates_state", table_name="rollout_gates")
    op.drop_index("ix_rollout_gates_scene_channel", table_name="rollout_gates")
    op.drop_table("rollout_gates")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("earlier")
