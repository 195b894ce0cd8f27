"""monitor: an index on messages.classified_at (the dashboard's live "classified later" updates); dead letters can be
dismissed or edited before a replay (who closed them and when, the payload as first received).

Revision ID: monitor_0004_live_dead_letters
Revises: monitor_0003_topics
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "monitor_0004_live_dead_letters"
down_revision = "monitor_0003_topics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_classified_at", "messages", ["classified_at"])
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column("closed_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("original_payload", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_column("original_payload")
        batch.drop_column("closed_at")
        batch.drop_column("closed_by")
    op.drop_index("ix_messages_classified_at", "messages")
