"""ORM classes for the registry: model versions, their events, and training runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from finetune.vocabulary import ModelStatus, RunStatus
from newsdesk.db import Base, utcnow


class ModelVersion(Base):
    """One trained model on disk (`path`), its metrics and whether it is served (`status == "current"`)."""

    __tablename__ = "model_versions"
    __table_args__ = (sa.UniqueConstraint("task", "version", name="uq_model_versions_task_version"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(32), index=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default=ModelStatus.CANDIDATE.value)
    path: Mapped[str] = mapped_column(sa.Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    primary_metric: Mapped[str] = mapped_column(sa.String(64))
    primary_value: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    args: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    train_seconds: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    run_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)


class ModelEvent(Base):
    """Audit trail: registered, promoted, kept (gate refused), rolled back."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(32), index=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class TrainingRun(Base):
    """One (queued, running or finished) training run and its outcome, shown in the web console."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    task: Mapped[str] = mapped_column(sa.String(32), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=RunStatus.QUEUED.value)
    trigger: Mapped[str] = mapped_column(sa.String(32), default="cli")
    requested_by: Mapped[str] = mapped_column(sa.String(128), default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    version: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    promoted: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    data_rows: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    output_dir: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    # A queued run's own inputs ({"train_files": [...], "dev_file": ..., "args": {...}, "promote": ...}); None: the
    # worker uses the last version's files plus NEWSDESK_HOME/labels/<task>/ (see finetune.jobs).
    request: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    # While it runs: {"stage", "step", "total", "eta_s", "at"} from the trainer's progress callback (every ~10 s).
    progress: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
