"""Scheduled retraining: a cron job per task that trains only when enough new data arrived, and a queue runner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from finetune import registry
from finetune.data import count_positives, read_labelled
from finetune.tables import ModelVersion, TrainingRun
from finetune.vocabulary import TASKS, RunStatus
from newsdesk.db import session_scope, utcnow
from newsdesk.errors import Conflict, NewsdeskError
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

QUEUE_INTERVAL_S = 30
LABEL_SUFFIXES = (".csv", ".jsonl")


# recsys's collaborative targets and served evaluation for the recsys retrain: (settings, dev file) -> factory.
# The worker (composition root) sets it to `recsys.behaviour.behaviour_source`; finetune never imports recsys.
behaviour_source: Callable[[Settings, str | None], Any] | None = None


def register(scheduler: Any, settings: Settings, stop_event: threading.Event) -> None:
    """Add the cron retraining jobs (one per task) and the queued-run runner to the worker's scheduler."""
    from apscheduler.triggers.cron import CronTrigger

    mark_stale_runs(settings)
    for task, cron in (("sentiment", settings.finetune.sentiment_cron), ("recsys", settings.finetune.recsys_cron)):
        if not cron:
            continue
        scheduler.add_job(scheduled_retrain, CronTrigger.from_crontab(cron, timezone="UTC"),
                          args=[settings, task], id=f"finetune:{task}:cron", name=f"retrain {task} (cron)",
                          replace_existing=True)
    scheduler.add_job(run_queued, "interval", seconds=QUEUE_INTERVAL_S, args=[settings],
                      id="finetune:queue", name="run queued retraining requests", replace_existing=True)


def mark_stale_runs(settings: Settings) -> int:
    """Runs left "running" by a dead process (their task lock is free) become "interrupted"."""
    count = 0
    for task in TASKS:
        try:
            with registry.task_lock(settings, task), session_scope(settings.database_url) as session:
                count += registry.reclaim_dead_runs(session, task)
        except Conflict:  # a live run holds the lock
            continue
    return count


def _last_sentiment_files(settings: Settings, key: str) -> list[Path]:
    """The `key` ("train" or "pretrain") file paths recorded in the newest sentiment version's data."""
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.task == "sentiment")
                             .order_by(ModelVersion.id.desc()).limit(1))
        entries = (row.data or {}).get(key, []) if row is not None else []
    return [Path(f["path"]) for f in entries if f.get("path")]


def sentiment_sources(settings: Settings) -> list[Path]:
    """Training files for unattended sentiment runs: the last version's files plus NEWSDESK_HOME/labels/sentiment/."""
    files = _last_sentiment_files(settings, "train")
    folder = settings.home / "labels" / "sentiment"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in LABEL_SUFFIXES)
    seen: set[Path] = set()
    return [f for f in files if f.is_file() and not (f.resolve() in seen or seen.add(f.resolve()))]


def sentiment_pretrain_sources(settings: Settings) -> list[Path]:
    """First-stage files of unattended sentiment runs: those of the last version (`--pretrain`), if still there."""
    return [f for f in _last_sentiment_files(settings, "pretrain") if f.is_file()]


def new_data(settings: Settings, task: str) -> tuple[int, int]:
    """(rows available now, rows used by the last successful run of `task`; 0 if none)."""
    with session_scope(settings.database_url) as session:
        last = session.scalar(select(TrainingRun.data_rows).where(
            TrainingRun.task == task, TrainingRun.status == RunStatus.SUCCEEDED)
            .order_by(TrainingRun.id.desc()).limit(1))
        if task == "recsys":
            now = count_positives(session, settings.recsys.positive_rating)
    if task == "sentiment":
        files = sentiment_sources(settings)
        now = len(read_labelled(files)) if files else 0
    return now, int(last or 0)


def scheduled_retrain(settings: Settings, task: str) -> str:
    """Cron entry point: retrain `task` if enough new labels/interactions arrived; returns what it did."""
    needed = settings.finetune.min_new_labels if task == "sentiment" else settings.finetune.min_new_interactions
    try:
        now, before = new_data(settings, task)
    except NewsdeskError as exc:
        log.warning("scheduled %s retrain skipped: %s", task, exc)
        return f"skipped: {exc}"
    if now == 0 or (before and now - before < needed):
        msg = f"skipped: {now - before} new rows since the last run (needs {needed})"
        log.info("scheduled %s retrain %s", task, msg)
        return msg
    return _run(settings, task, trigger="schedule", run_id=None)


def run_queued(settings: Settings) -> list[str]:
    """Interval entry point: run each task's oldest queued request (one run per task at a time)."""
    done = []
    for task in TASKS:
        with session_scope(settings.database_url) as session:
            run_id = session.scalar(select(TrainingRun.id).where(TrainingRun.task == task,
                                                                 TrainingRun.status == RunStatus.QUEUED)
                                    .order_by(TrainingRun.id).limit(1))
            request = session.get(TrainingRun, run_id).request if run_id is not None else None
        if run_id is not None:
            done.append(_run(settings, task, trigger="request", run_id=run_id, request=request))
    return done


def _run(settings: Settings, task: str, *, trigger: str, run_id: int | None, request: dict | None = None) -> str:
    """One unattended run; `request` (a queued run's own inputs) replaces the default files and arguments."""
    from finetune.service import retrain

    request = request or {}
    if request.get("train_files"):
        files = [Path(f) for f in request["train_files"]]
    else:
        files = sentiment_sources(settings) if task == "sentiment" else []
    if task == "sentiment" and not files:
        msg = "failed: no sentiment training files (train once from the CLI or add NEWSDESK_HOME/labels/sentiment/)"
        _fail_queued(settings, run_id, msg)
        return msg
    try:
        pretrain = sentiment_pretrain_sources(settings) if task == "sentiment" and not request else []
        behaviour = None
        if task == "recsys" and behaviour_source is not None:  # set by the worker (the composition root)
            behaviour = behaviour_source(settings, request.get("dev_file") or settings.finetune.recsys_dev_path
                                         or None)
        outcome = retrain(settings, task, train_files=files, trigger=trigger, run_id=run_id, pretrain_files=pretrain,
                          behaviour=behaviour, dev_file=request.get("dev_file"), args=request.get("args"),
                          promote=request.get("promote", "auto"))
    except Conflict as exc:
        log.info("%s retrain postponed: %s", task, exc)
        return f"postponed: {exc}"
    except NewsdeskError as exc:
        log.warning("%s retrain failed: %s", task, exc)
        _fail_queued(settings, run_id, str(exc))
        return f"failed: {exc}"
    return f"{outcome.version}: {outcome.reason}"


def _fail_queued(settings: Settings, run_id: int | None, message: str) -> None:
    """A queued run that could not even start is marked failed, so it is not retried forever."""
    if run_id is None:
        return
    with session_scope(settings.database_url) as session:
        run = session.get(TrainingRun, run_id)
        if run is not None and run.status == RunStatus.QUEUED:
            run.status, run.finished_at, run.error = RunStatus.FAILED, utcnow(), message
