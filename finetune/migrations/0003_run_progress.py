"""finetune: training_runs.progress (a running training's stage, step, total steps and time left, for the console).

Revision ID: finetune_0003
Revises: finetune_0002
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "finetune_0003"
down_revision = "finetune_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("progress")
