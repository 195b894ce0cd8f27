"""monitor: topic and topic score per message (and per ticker link), topic scope of rules, topic of alerts.

Revision ID: monitor_0003_topics
Revises: monitor_0002_faults
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "monitor_0003_topics"
down_revision = "monitor_0002_faults"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("topic", sa.String(64), nullable=True))
        batch.add_column(sa.Column("topic_score", sa.Float, nullable=True))
    op.create_index("ix_messages_topic_ts", "messages", ["topic", "ts"])
    with op.batch_alter_table("message_tickers") as batch:
        batch.add_column(sa.Column("topic", sa.String(64), nullable=True))
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(sa.Column("topics", sa.JSON, nullable=False, server_default="[]"))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("topic", sa.String(64), nullable=True))
    op.create_index("ix_alerts_topic", "alerts", ["topic"])


def downgrade() -> None:
    op.drop_index("ix_alerts_topic", "alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("topic")
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_column("topics")
    with op.batch_alter_table("message_tickers") as batch:
        batch.drop_column("topic")
    op.drop_index("ix_messages_topic_ts", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("topic_score")
        batch.drop_column("topic")
