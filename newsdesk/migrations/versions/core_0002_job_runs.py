"""core: job_runs, one row per executed tick of a scheduled job (worker, scheduled time, start, end, outcome).

Revision ID: core_0002_job_runs
Revises: core_0001
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0002_job_runs"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("worker", sa.String(128), nullable=False),
        sa.Column("scheduled_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        sa.UniqueConstraint("job_id", "scheduled_at", name="uq_job_runs_job_id_scheduled_at"),
    )
    op.create_index("ix_job_runs_scheduled_at", "job_runs", ["scheduled_at"])


def downgrade() -> None:
    op.drop_index("ix_job_runs_scheduled_at", "job_runs")
    op.drop_table("job_runs")
