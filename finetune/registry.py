"""Versions on disk and in the database: staging, atomic publish, register, current, promote, rollback.

Whether a new version is promoted is `finetune.gate`'s decision.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from finetune import store
from finetune.evaluate import PRIMARY
from finetune.tables import ModelEvent, ModelVersion, TrainingRun
from finetune.vocabulary import JOINT_TASKS, MULTITASK, RUN_TASKS, TASKS, ModelEventKind, ModelStatus, RunStatus
from newsdesk import locks
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput, NotFound
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

JOINT = MULTITASK  # the run task of a joint model (`JOINT_TASKS` from one encoder)
__all__ = ["JOINT", "JOINT_TASKS", "RUN_TASKS", "TASKS"]  # re-exported: the registry's task vocabulary


@dataclass(frozen=True)
class VersionInfo:
    task: str
    version: str
    status: str
    is_current: bool
    metrics: dict[str, Any]
    primary_metric: str
    primary_value: float | None
    created_at: datetime
    promoted_at: datetime | None
    train_seconds: float | None
    path: Path
    args: dict[str, Any]
    data: dict[str, Any]
    run_id: int | None


@dataclass(frozen=True)
class RunInfo:
    id: int
    task: str
    status: str
    trigger: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version: str | None
    promoted: bool
    metrics: dict[str, Any]
    reason: str
    error: str | None
    progress: dict[str, Any] | None = None  # while running: stage, step, total, eta_s, at (see finetune.callbacks)


def check_task(task: str, *, runs: bool = False) -> str:
    """`task` if it is a served task (or, with `runs`, a task a training run may have). Raises InvalidInput."""
    allowed = RUN_TASKS if runs else TASKS
    if task not in allowed:
        raise InvalidInput(f"unknown task {task!r} (expected {', '.join(allowed)})", {"field": "task"})
    return task


def version_info(row: ModelVersion) -> VersionInfo:
    return VersionInfo(row.task, row.version, row.status, row.status == ModelStatus.CURRENT, dict(row.metrics or {}),
                       row.primary_metric, row.primary_value, row.created_at, row.promoted_at, row.train_seconds,
                       Path(row.path), dict(row.args or {}), dict(row.data or {}), row.run_id)


def run_info(row: TrainingRun) -> RunInfo:
    return RunInfo(row.id, row.task, row.status, row.trigger, row.requested_by, row.created_at, row.started_at,
                   row.finished_at, row.version, bool(row.promoted), dict(row.metrics or {}), row.reason or "",
                   row.error, dict(row.progress) if row.progress else None)


# Locks and runs ----------------------------------------------------------------------------------------------------


@contextmanager
def task_lock(settings: Settings, task: str) -> Iterator[None]:
    """One training run per task at a time, across processes and machines: a lock in the database (a PostgreSQL
    advisory lock; with SQLite a file lock next to the database), released when the holding process dies.

    Raises:
        Conflict: another run of `task` holds the lock.
    """
    with locks.hold(settings.database_url, f"train:{task}", what=f"a {task} training run",
                    fallback_dir=settings.home / "locks"):
        yield


def reclaim_dead_runs(session: Session, task: str) -> int:
    """Runs of `task` still marked running become "interrupted" (resumable). Call it only while holding the
    task's lock: then no live process is running any of them (a killed trainer, even by kill -9, lost the lock)."""
    n = 0
    for run in session.scalars(select(TrainingRun).where(TrainingRun.task == task,
                                                         TrainingRun.status == RunStatus.RUNNING)):
        run.status, run.finished_at = RunStatus.INTERRUPTED, utcnow()
        run.error = run.error or "the process running it stopped"
        n += 1
    if n:
        log.info("%d %s run(s) left running by a dead process marked interrupted", n, task)
    return n


def lock_is_free(settings: Settings, task: str) -> bool:
    """True when no process (on any machine) holds `task`'s training lock."""
    return locks.is_free(settings.database_url, f"train:{task}", fallback_dir=settings.home / "locks")


def new_version_name(session: Session, *tasks: str) -> str:
    """`v<UTC timestamp>`, with a numeric suffix if that name is taken (by a version of any of `tasks`)."""
    base = "v" + utcnow().strftime("%Y%m%d-%H%M%S")
    name, n = base, 1
    while session.scalar(select(ModelVersion.id).where(ModelVersion.task.in_(tasks), ModelVersion.version == name)):
        n += 1
        name = f"{base}-{n}"
    return name


def staging_dir(settings: Settings, task: str, version: str) -> Path:
    """A fresh temp folder beside the final one (same file system, so the publish rename is atomic); with a shared
    model store, in this machine's `models/` (published by a copy to the store, then a rename there)."""
    path = settings.models_dir / task / f".staging-{version}"
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def publish(staged: Path, settings: Settings, task: str, version: str, sidecars: dict[str, Any]) -> Path:
    """Write `sidecars` as JSON files (metrics.json, args.json, data.json, timing.json) then publish the folder to
    the model store in one rename (`finetune.store`); returns its folder in the store.

    Raises:
        Conflict: that version folder already exists.
    """
    for name, payload in sidecars.items():
        (staged / name).write_text(json.dumps(payload, indent=2, default=str))
    return store.publish_folder(staged, settings, task, version)


def model_folder(settings: Settings, row: ModelVersion | VersionInfo) -> Path:
    """The folder to load a version from on this machine (from the model store's local cache when there is one).

    Raises:
        Unavailable: the version's folder is in neither the store nor this machine's cache.
    """
    return store.local_folder(settings, row.path)


def register(session: Session, *, task: str, version: str, path: Path, metrics: dict[str, Any],
             args: dict[str, Any], data: dict[str, Any], train_seconds: float | None,
             run_id: int | None) -> ModelVersion:
    """Insert a `candidate` version row (not served until promoted) and a `registered` event."""
    metric, _ = PRIMARY[task]
    row = ModelVersion(task=task, version=version, status=ModelStatus.CANDIDATE, path=str(path), metrics=metrics,
                       primary_metric=metric, primary_value=metrics.get(metric), args=args, data=data,
                       train_seconds=train_seconds, run_id=run_id, created_at=utcnow())
    session.add(row)
    session.add(ModelEvent(task=task, version=version, kind=ModelEventKind.REGISTERED, actor="",
                           detail={"metric": metric, "value": metrics.get(metric)}, created_at=utcnow()))
    session.flush()
    return row


# Current, promotion, rollback --------------------------------------------------------------------------------------


def current_row(session: Session, task: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion)
                          .where(ModelVersion.task == task, ModelVersion.status == ModelStatus.CURRENT)
                          .order_by(ModelVersion.promoted_at.desc()).limit(1))


def get_row(session: Session, task: str, version: str) -> ModelVersion:
    row = session.scalar(select(ModelVersion).where(ModelVersion.task == task, ModelVersion.version == version))
    if row is None:
        raise NotFound(f"no {task} model version {version!r}", {"task": task, "version": version})
    return row


def set_current(session: Session, task: str, version: str, *, actor: str, kind: str = ModelEventKind.PROMOTED,
                detail: dict[str, Any] | None = None, settings: Settings | None = None) -> ModelVersion:
    """Make `version` the served one; the previous current becomes `archived` (or `rolled_back`). With `settings`
    its folder is looked for in the model store (which another machine may mount elsewhere)."""
    row = get_row(session, task, version)
    if not (store.is_published(settings, row.path) if settings else Path(row.path).is_dir()):
        raise NotFound(f"model folder {row.path} of {task} {version} is missing", {"version": version})
    previous = current_row(session, task)
    if previous is not None and previous.id != row.id:
        previous.status = ModelStatus.ROLLED_BACK if kind == ModelEventKind.ROLLED_BACK else ModelStatus.ARCHIVED
    row.status = ModelStatus.CURRENT
    row.promoted_at = utcnow()
    session.add(ModelEvent(task=task, version=version, kind=kind, actor=actor,
                           detail={"previous": previous.version if previous else None, **(detail or {})},
                           created_at=utcnow()))
    session.flush()
    log.info("%s model %s is now current (%s by %s)", task, version, kind, actor or "system")
    return row


def rollback(session: Session, task: str, *, actor: str, settings: Settings | None = None) -> ModelVersion:
    """Serve the previously promoted version again; the current one is marked `rolled_back`.

    Raises:
        NotFound: no current version, or none promoted before it.
    """
    current = current_row(session, task)
    if current is None:
        raise NotFound(f"no current {task} model to roll back")
    earlier = session.scalars(select(ModelVersion).where(
        ModelVersion.task == task, ModelVersion.id != current.id, ModelVersion.promoted_at.is_not(None),
        ModelVersion.status != ModelStatus.ROLLED_BACK).order_by(ModelVersion.promoted_at.desc())).all()
    for candidate in earlier:
        if store.is_published(settings, candidate.path) if settings else Path(candidate.path).is_dir():
            return set_current(session, task, candidate.version, actor=actor, kind=ModelEventKind.ROLLED_BACK,
                               detail={"from": current.version}, settings=settings)
    raise NotFound(f"no earlier promoted {task} model to roll back to")


def add_event(session: Session, task: str, version: str, kind: str, actor: str = "", **detail: Any) -> None:
    session.add(ModelEvent(task=task, version=version, kind=kind, actor=actor, detail=detail, created_at=utcnow()))
