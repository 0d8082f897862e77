"""TUF metadata in the database (``tuf_metadata``, ``tuf_pending_publication``), for registry
replicas that share no disk.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuf_metadata",
        sa.Column("role", sa.String(80), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tuf_pending_publication",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tuf_pending_publication")
    op.drop_table("tuf_metadata")
