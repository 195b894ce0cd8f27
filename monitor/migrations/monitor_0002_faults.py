"""monitor: notifications get a unique key per alert transition and the start of their retry period.

Revision ID: monitor_0002_faults
Revises: monitor_0001
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "monitor_0002_faults"
down_revision = "monitor_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("dedup_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("retry_since", sa.DateTime, nullable=True))
        batch.create_unique_constraint("uq_notifications_dedup_key", ["dedup_key"])


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notifications_dedup_key", type_="unique")
        batch.drop_column("retry_since")
        batch.drop_column("dedup_key")
