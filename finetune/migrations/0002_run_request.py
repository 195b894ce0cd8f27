"""finetune: training_runs.request (what a queued run trains on: files, dev file, arguments, promote mode).

Revision ID: finetune_0002
Revises: finetune_0001
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "finetune_0002"
down_revision = "finetune_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("request", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("request")
