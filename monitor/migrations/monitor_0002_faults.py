"""monitor: notifications get a unique key per alert transition and the start of their retry period; the rule
cursor (how far rules have been evaluated on stream time).

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
    op.create_table(
        "rule_cursor",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("evaluated_to", sa.DateTime, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rule_cursor"),
    )


def downgrade() -> None:
    op.drop_table("rule_cursor")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_constraint("uq_notifications_dedup_key", type_="unique")
        batch.drop_column("retry_since")
        batch.drop_column("dedup_key")
