"""Scheduled retraining: a cron job per task that trains only when enough new data arrived, and a queue runner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from finetune import registry
from finetune.data import LABELS, count_positives, read_labelled
from finetune.tables import ModelVersion, TrainingRun
from finetune.vocabulary import MULTITASK, RUN_TASKS, RunStatus, Task
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
    crons = (("sentiment", settings.finetune.sentiment_cron), ("topic", settings.finetune.topic_cron),
             ("recsys", settings.finetune.recsys_cron))
    for task, cron in crons:
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
    for task in RUN_TASKS:
        try:  # a joint run holds the sentiment lock (and the topic one)
            with registry.task_lock(settings, Task.SENTIMENT if task == MULTITASK else task), \
                    session_scope(settings.database_url) as session:
                count += registry.reclaim_dead_runs(session, task)
        except Conflict:  # a live run holds the lock
            continue
    return count


@dataclass
class Plan:
    """What an unattended run of a task trains: the run's task ("multitask" when a joint model serves it) and its
    files (training files per classifier task, sentiment pretraining files)."""

    task: str
    files: dict[str, list[Path]] = field(default_factory=dict)
    pretrain: list[Path] = field(default_factory=list)

    def rows(self) -> int:
        return sum(len(read_labelled(f, LABELS if t == "sentiment" else None)) for t, f in self.files.items() if f)


def _existing(files: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    return [f for f in files if f.is_file() and not (f.resolve() in seen or seen.add(f.resolve()))]


def _paths(entries: list[dict[str, Any]]) -> list[Path]:
    return [Path(f["path"]) for f in entries if f.get("path")]


def _newest_data(settings: Settings, task: str) -> dict[str, Any]:
    """The data record of the newest version of `task` ({} if none)."""
    with session_scope(settings.database_url) as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.task == task)
                             .order_by(ModelVersion.id.desc()).limit(1))
        return dict(row.data or {}) if row is not None else {}


def plan(settings: Settings, task: str) -> Plan:
    """The unattended run for `task`: the newest version's training files plus NEWSDESK_HOME/labels/<task>/ (files
    that are gone are dropped). Sentiment or topic served by a joint model retrain the joint model (both tasks'
    files); "multitask" plans a joint run from the newest joint version's files."""
    if task == "recsys":
        return Plan("recsys")
    data = _newest_data(settings, "sentiment" if task == registry.JOINT else task)
    joint = data.get("joint") or ({"data": {}} if task == registry.JOINT else None)
    run_task = registry.JOINT if joint is not None else task
    records = joint["data"] if joint is not None else {task: data}
    out = Plan(run_task)
    for name in (registry.JOINT_TASKS if joint is not None else (task,)):
        folder = settings.home / "labels" / name
        extra = sorted(p for p in folder.iterdir() if p.suffix in LABEL_SUFFIXES) if folder.is_dir() else []
        out.files[name] = _existing(_paths(records.get(name, {}).get("train", [])) + extra)
    out.pretrain = _existing(_paths(records.get("sentiment", {}).get("pretrain", [])))
    return out


def sentiment_sources(settings: Settings) -> list[Path]:
    """Training files for unattended sentiment runs: the last version's files plus NEWSDESK_HOME/labels/sentiment/."""
    return plan(settings, "sentiment").files.get("sentiment", [])


def new_data(settings: Settings, task: str, planned: Plan | None = None) -> tuple[int, int]:
    """(rows available now, rows used by the last successful run of `task`, or of the joint run that serves it;
    0 if none)."""
    planned = planned or plan(settings, task)
    with session_scope(settings.database_url) as session:
        last = session.scalar(select(TrainingRun.data_rows).where(
            TrainingRun.task == planned.task, TrainingRun.status == RunStatus.SUCCEEDED)
            .order_by(TrainingRun.id.desc()).limit(1))
        if task == "recsys":
            return count_positives(session, settings.recsys.positive_rating), int(last or 0)
    return planned.rows(), int(last or 0)


def scheduled_retrain(settings: Settings, task: str) -> str:
    """Cron entry point: retrain `task` if enough new labels/interactions arrived; returns what it did."""
    needed = settings.finetune.min_new_interactions if task == "recsys" else settings.finetune.min_new_labels
    try:
        planned = plan(settings, task)
        if task == "topic" and planned.task == registry.JOINT:
            msg = "skipped: topic is served by a joint model, which the sentiment schedule retrains"
            log.info("scheduled topic retrain %s", msg)
            return msg
        now, before = new_data(settings, task, planned)
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
    for task in RUN_TASKS:
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
    try:
        if request.get("train_files"):  # a queued run with its own inputs (e.g. the demo's first model)
            run_task, pretrain = task, []
            train_files = [Path(f) for f in request["train_files"]]
            topic_files = [Path(f) for f in request.get("topic_train_files", [])]
        else:
            planned = plan(settings, task)
            if task != "recsys" and not all(planned.files.values()):
                missing = ", ".join(t for t, f in planned.files.items() if not f)
                msg = (f"failed: no {missing} training files (train once from the CLI or add "
                       f"NEWSDESK_HOME/labels/{missing.split(',')[0]}/)")
                _fail_queued(settings, run_id, msg)
                return msg
            if run_id is not None and planned.task != task:  # a queued request for a task a joint model serves
                _retarget(settings, run_id, planned.task)
            run_task, files, pretrain = planned.task, planned.files, planned.pretrain
            train_files = files.get("sentiment", files.get("topic", []))
            topic_files = files.get("topic", []) if run_task == registry.JOINT else []
        behaviour = None
        if task == "recsys" and behaviour_source is not None:  # set by the worker (the composition root)
            behaviour = behaviour_source(settings, request.get("dev_file") or settings.finetune.recsys_dev_path
                                         or None)
        outcome = retrain(settings, run_task, train_files=train_files, topic_train_files=topic_files,
                          dev_file=request.get("dev_file"), topic_dev_file=request.get("topic_dev_file"),
                          args=request.get("args"), promote=request.get("promote", "auto"),
                          trigger=trigger, run_id=run_id, pretrain_files=pretrain, behaviour=behaviour)
    except Conflict as exc:
        log.info("%s retrain postponed: %s", task, exc)
        return f"postponed: {exc}"
    except NewsdeskError as exc:
        log.warning("%s retrain failed: %s", task, exc)
        _fail_queued(settings, run_id, str(exc))
        return f"failed: {exc}"
    return f"{outcome.version}: {outcome.reason}"


def _retarget(settings: Settings, run_id: int, task: str) -> None:
    """A queued run becomes a run of `task` (the joint model that serves the requested task)."""
    with session_scope(settings.database_url) as session:
        run = session.get(TrainingRun, run_id)
        if run is not None:
            run.task = task


def _fail_queued(settings: Settings, run_id: int | None, message: str) -> None:
    """A queued run that could not even start is marked failed, so it is not retried forever."""
    if run_id is None:
        return
    with session_scope(settings.database_url) as session:
        run = session.get(TrainingRun, run_id)
        if run is not None and run.status == RunStatus.QUEUED:
            run.status, run.finished_at, run.error = RunStatus.FAILED, utcnow(), message
