"""The core's one table: every execution of a scheduled job (which worker ran which tick, and how it ended)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from newsdesk.db import Base, utcnow


class JobRun(Base):
    """One tick of one scheduled job, claimed by the worker that ran it: (job_id, scheduled_at) is unique, so a tick
    runs at most once whatever the schedulers do."""

    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job_id", "scheduled_at", name="uq_job_runs_job_id_scheduled_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.String(128))
    worker: Mapped[str] = mapped_column(sa.String(128))  # host:pid
    scheduled_at: Mapped[datetime] = mapped_column(sa.DateTime, index=True)  # the tick (UTC)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(sa.String(16))  # newsdesk.jobruns.JobOutcome
    detail: Mapped[str] = mapped_column(sa.Text, default="")  # what the job returned, or its error
