"""recsys: the predicted topic of items without a category (label, score, topic version, text hash labelled).

Revision ID: recsys_0002_topics
Revises: recsys_0001
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "recsys_0002_topics"
down_revision = "recsys_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("topic", sa.String(128), nullable=True))
        batch.add_column(sa.Column("topic_score", sa.Float, nullable=True))
        batch.add_column(sa.Column("topic_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("topic_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("topic_hash")
        batch.drop_column("topic_version")
        batch.drop_column("topic_score")
        batch.drop_column("topic")
