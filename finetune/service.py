"""Front door of finetune: retrain, request_retrain, versions, promote, rollback, evaluate, classify, encoder_path."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from finetune import gate, registry, store
from finetune.args import build_args
from finetune.behaviour import BehaviourSource
from finetune.classifier import (
    ClassifierHandle,
    Prediction,
    SentimentClassifier,
    TextClassifier,
    inference_dtype,
    load_served,
)
from finetune.inference import cache_dir, read_selection
from finetune.model import read_tasks
from finetune.pipeline import TaskFiles, TrainOutcome, finish, finish_joint, prepare_classifier, prepare_recsys
from finetune.progress import PROGRESS_SINK
from finetune.registry import JOINT, JOINT_TASKS, RunInfo, VersionInfo, check_task, run_info, version_info
from finetune.tables import ModelVersion, TrainingRun
from finetune.vocabulary import RunStatus, Task
from newsdesk.db import session_scope, utcnow
from newsdesk.device import resolve_device
from newsdesk.encoders import base_model_path
from newsdesk.errors import InvalidInput, NewsdeskError, NotFound
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ClassifierHandle", "Prediction", "RunInfo", "SentimentClassifier", "TextClassifier", "TrainOutcome",
           "VersionInfo",
           "classify_texts", "current_version", "distil", "encoder_path", "evaluate_version", "list_training_runs",
           "list_versions", "promote", "request_retrain", "retrain", "rollback"]


def retrain(settings: Settings, task: str, *, train_files: Sequence[str | Path] = (),
            dev_file: str | Path | None = None, promote: str = "auto", args: Mapping[str, Any] | None = None,
            trigger: str = "cli", run_id: int | None = None, resume: bool = False, actor: str = "",
            pretrain_files: Sequence[str | Path] = (), topic_train_files: Sequence[str | Path] = (),
            topic_dev_file: str | Path | None = None,
            behaviour: Callable[[Any], BehaviourSource] | None = None) -> TrainOutcome:
    """Train a new version of `task`, evaluate it against the current one, register it and promote it if better.

    `task` "sentiment" or "topic" trains a single-task classifier on `train_files`; "multitask" trains one joint
    model with a sentiment head (`train_files`, `dev_file`) and a topic head (`topic_train_files`,
    `topic_dev_file`), registered as a version of both tasks and promoted for both only if it loses on neither.
    Runs under the task's lock (a joint run holds both). A failure or interruption marks the run failed/interrupted
    and leaves what is served untouched (the model is only renamed into place and made current once fully written
    and evaluated). `run_id` runs an existing queued row; `resume` continues the newest interrupted run's
    checkpoints. `pretrain_files` (sentiment rows): labelled text from a related source, learned first
    (intermediate-task transfer).
    `behaviour` (recsys, objective "collab"): a factory (parsed args -> source) of the targets and the served
    evaluation (recsys's `ServedBehaviour`, handed in by the composition root; finetune never imports recsys).

    Raises:
        InvalidInput: bad data, arguments or promote mode.  Conflict: a run of this task is already in progress.
    """
    check_task(task, runs=True)
    gate.check_mode(promote)  # before any work
    parsed = build_args(task, args)
    url = settings.database_url
    settings.ensure_dirs()
    with contextlib.ExitStack() as locks:
        for locked in (JOINT_TASKS if task == JOINT else (task,)):
            locks.enter_context(registry.task_lock(settings, locked))
        with session_scope(url) as session:
            registry.reclaim_dead_runs(session, task)  # we hold the lock: a run still "running" was killed
            session.flush()
            work_dir = _resume_dir(session, task) if resume else None
            run = session.get(TrainingRun, run_id) if run_id else None
            if run_id and run is None:
                raise NotFound(f"no training run {run_id}")
            if run is None:
                run = TrainingRun(task=task, trigger=trigger, requested_by=actor, created_at=utcnow())
                session.add(run)
            run.status, run.started_at, run.error = RunStatus.RUNNING, utcnow(), None
            session.flush()
            run_id = run.id
            version = registry.new_version_name(session, *(JOINT_TASKS if task == JOINT else (task,)))
            work_dir = work_dir or settings.runs_dir / task / f"run-{run_id}"
            run.output_dir = str(work_dir)
        staged = registry.staging_dir(settings, task, version)
        locks.callback(PROGRESS_SINK.reset, PROGRESS_SINK.set(_progress_writer(url, run_id)))
        try:
            if task == "recsys":
                prepared = prepare_recsys(url, settings, dev_file, parsed, work_dir=work_dir, staged=staged,
                                          resume=resume, behaviour=behaviour(parsed) if behaviour else None)
            else:
                files = {"sentiment": TaskFiles(tuple(train_files), dev_file)} if task != "topic" else {}
                if task == "topic":
                    files["topic"] = TaskFiles(tuple(train_files), dev_file)
                elif task == JOINT:
                    files["topic"] = TaskFiles(tuple(topic_train_files), topic_dev_file)
                prepared = prepare_classifier(url, settings, files, parsed, work_dir=work_dir, staged=staged,
                                              resume=resume, pretrain_files=pretrain_files)
            outcome = _register(url, settings, task, version, run_id, prepared, parsed.to_dict(), promote,
                                actor or trigger)
        except BaseException as exc:
            shutil.rmtree(staged, ignore_errors=True)
            status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            _mark_run(url, run_id, status, f"{type(exc).__name__}: {exc}")
            log.warning("%s run %s %s: %s", task, run_id, status, exc)
            raise
        shutil.rmtree(work_dir, ignore_errors=True)  # checkpoints are only needed to resume an unfinished run
        return outcome


def distil(settings: Settings, task: str, *, teacher: str | None = None, train_files: Sequence[str | Path] = (),
           unlabelled_files: Sequence[str | Path] = (), dev_file: str | Path | None = None, promote: str = "auto",
           args: Mapping[str, Any] | None = None, trigger: str = "cli", actor: str = "") -> TrainOutcome:
    """Distil the current (or `teacher`) version of `task` into a smaller student (finetune/distil.py), register it
    as a new version of the teacher's tasks (both for a joint teacher) and gate it: on "auto" it is promoted only
    when it loses at most `finetune.inference_tolerance` macro-F1 against the current version on the teacher's
    check set; else it stays a candidate with its measured loss, for `models promote`.

    Raises:
        InvalidInput: bad task, arguments, data or promote mode.  NotFound: no such teacher.  Conflict: a run of
            the task is in progress.
    """
    from finetune.distil import Teacher, prepare_student

    if check_task(task) == Task.RECSYS:
        raise InvalidInput("a student is distilled from a sentiment or topic classifier", {"field": "task"})
    gate.check_mode(promote)
    parsed = build_args("student", args)
    url = settings.database_url
    settings.ensure_dirs()
    with session_scope(url) as session:
        row = registry.get_row(session, task, teacher) if teacher else registry.current_row(session, task)
        if row is None:
            raise NotFound(f"no {task} model is in service to distil: train one, or name one with --teacher")
        folder = registry.model_folder(settings, row)
        tasks = tuple(read_tasks(folder))
        rows = {t: registry.get_row(session, t, row.version) for t in tasks}
        source = Teacher(row.version, folder, tasks, {t: dict(r.data or {}) for t, r in rows.items()})
    run_task = JOINT if len(tasks) > 1 else tasks[0]
    with contextlib.ExitStack() as locks:
        for locked in tasks:
            locks.enter_context(registry.task_lock(settings, locked))
        with session_scope(url) as session:
            registry.reclaim_dead_runs(session, run_task)
            run = TrainingRun(task=run_task, trigger=trigger, requested_by=actor, created_at=utcnow(),
                              status=RunStatus.RUNNING, started_at=utcnow())
            session.add(run)
            session.flush()
            run_id = run.id
            version = registry.new_version_name(session, *tasks)
        staged = registry.staging_dir(settings, run_task, version)
        locks.callback(PROGRESS_SINK.reset, PROGRESS_SINK.set(_progress_writer(url, run_id)))
        try:
            prepared = prepare_student(url, settings, source, parsed, staged=staged, train_files=train_files,
                                       unlabelled_files=unlabelled_files, dev_file=dev_file)
            recorded = {**parsed.to_dict(), "student_of": source.version}
            outcome = _register(url, settings, run_task, version, run_id, prepared, recorded, promote,
                                actor or trigger)
        except BaseException as exc:
            shutil.rmtree(staged, ignore_errors=True)
            status = RunStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            _mark_run(url, run_id, status, f"{type(exc).__name__}: {exc}")
            log.warning("student run %s %s: %s", run_id, status, exc)
            raise
        return outcome


def _register(url: str, settings: Settings, task: str, version: str, run_id: int, prepared: Any,
              recorded: dict[str, Any], promote: str, actor: str) -> TrainOutcome:
    """Register and gate a prepared version (per task for a joint one) and record the finished run's outcome."""
    with session_scope(url) as session:
        if task == JOINT:
            outcome = finish_joint(session, settings, version, run_id, prepared, recorded, promote, actor)
        else:
            outcome = finish(session, settings, task, version, run_id, prepared, recorded, promote, actor)
        run = session.get(TrainingRun, run_id)
        run.status, run.finished_at, run.version = RunStatus.SUCCEEDED, utcnow(), version
        run.promoted, run.reason, run.data_rows = outcome.promoted, outcome.reason, prepared.data_rows
        run.metrics = {k: v for k, v in outcome.metrics.items() if not isinstance(v, (dict, list))}
        run.metrics.update({f"{t}_macro_f1": v for t, v in outcome.per_task.items()})
    return outcome


def _resume_dir(session: Session, task: str) -> Path:
    """Checkpoint folder of the newest interrupted/failed run of `task` that left checkpoints."""
    runs = session.scalars(select(TrainingRun).where(TrainingRun.task == task,
                                                     TrainingRun.status.in_((RunStatus.INTERRUPTED, RunStatus.FAILED)),
                                                     TrainingRun.output_dir.is_not(None))
                           .order_by(TrainingRun.id.desc())).all()
    for run in runs:
        folder = Path(run.output_dir)
        if any(folder.rglob("checkpoint-*")) or any(folder.rglob("weights.safetensors")):  # incl. stages, soups
            return folder
    raise NotFound(f"no interrupted {task} run with a checkpoint to resume")


def _progress_writer(url: str, run_id: int) -> Callable[[dict[str, Any]], None]:
    """A sink for the trainer's progress that stores it on the run's row; a failed write is logged, never raised
    (progress must not stop a training)."""

    def write(progress: dict[str, Any]) -> None:
        try:
            with session_scope(url) as session:
                run = session.get(TrainingRun, run_id)
                if run is not None:
                    run.progress = progress
        except (NewsdeskError, SQLAlchemyError) as exc:
            log.warning("could not record the progress of run %s: %s", run_id, exc)

    return write


def _mark_run(url: str, run_id: int, status: str, error: str) -> None:
    try:
        with session_scope(url) as session:
            run = session.get(TrainingRun, run_id)
            if run is not None:
                run.status, run.finished_at, run.error = status, utcnow(), error[:2000]
    except Exception:
        log.exception("could not record the end of run %s", run_id)


def request_retrain(session: Session, task: str, requested_by: str, *, train_files: Sequence[str | Path] = (),
                    dev_file: str | Path | None = None, topic_train_files: Sequence[str | Path] = (),
                    topic_dev_file: str | Path | None = None, args: Mapping[str, Any] | None = None,
                    promote: str = "auto", trigger: str = "request") -> int:
    """Queue a retraining of `task` (status "queued"; "multitask": the joint model); the worker's finetune job runs
    it. Returns the run id.

    Requests are coalesced per task: while a run of `task` is queued or running, that run's id is returned and
    nothing new is queued (16 clicks or API calls are one training, not 16 hours of CPU).
    `train_files`/`dev_file`/`topic_*`/`args`/`promote`: the run's own inputs (e.g. the demo's first model);
    without them the worker trains on the last version's files plus NEWSDESK_HOME/labels/<task>/.

    Raises:
        InvalidInput: unknown task, promote mode or arguments (checked now, not when the worker picks it up).
    """
    check_task(task, runs=True)
    gate.check_mode(promote)
    build_args(task, args)
    open_states = (RunStatus.QUEUED, RunStatus.RUNNING)
    pending = session.scalar(select(TrainingRun.id)
                             .where(TrainingRun.task == task, TrainingRun.status.in_(open_states))
                             .order_by(TrainingRun.id).limit(1))
    if pending is not None:
        return pending
    request = None
    if train_files or dev_file or topic_train_files or topic_dev_file or args or promote != "auto":
        request = {"train_files": [str(Path(f).resolve()) for f in train_files],
                   "dev_file": str(Path(dev_file).resolve()) if dev_file else None,
                   "topic_train_files": [str(Path(f).resolve()) for f in topic_train_files],
                   "topic_dev_file": str(Path(topic_dev_file).resolve()) if topic_dev_file else None,
                   "args": dict(args or {}), "promote": promote}
    run = TrainingRun(task=task, status=RunStatus.QUEUED, trigger=trigger, requested_by=requested_by,
                      created_at=utcnow(), request=request)
    session.add(run)
    session.flush()
    return run.id


def list_versions(session: Session, task: str | None = None) -> list[VersionInfo]:
    """Every registered version (newest first), optionally of one task."""
    query = select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    if task:
        query = query.where(ModelVersion.task == check_task(task))
    return [version_info(row) for row in session.scalars(query)]


def get_version(session: Session, task: str, version: str) -> VersionInfo:
    """One version. Raises NotFound."""
    return version_info(registry.get_row(session, check_task(task), version))


def current_version(session: Session, task: str) -> VersionInfo | None:
    row = registry.current_row(session, check_task(task))
    return version_info(row) if row is not None else None


def promote(session: Session, settings: Settings, task: str, version: str, *, actor: str = "cli") -> VersionInfo:
    """Serve `version` now (an operator's decision: no gate). Raises NotFound."""
    return version_info(registry.set_current(session, check_task(task), version, actor=actor,
                                             detail={"reason": "manual promotion"}, settings=settings))


def rollback(session: Session, settings: Settings, task: str, *, actor: str = "cli") -> VersionInfo:
    """Serve the previously promoted version again. Raises NotFound when there is none."""
    return version_info(registry.rollback(session, check_task(task), actor=actor, settings=settings))


def list_training_runs(session: Session, task: str | None = None, limit: int = 50) -> list[RunInfo]:
    """Training runs, newest first."""
    query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)
    if task:
        query = query.where(TrainingRun.task == check_task(task, runs=True))
    return [run_info(row) for row in session.scalars(query)]


def encoder_path(session: Session, settings: Settings, task: str = "recsys") -> tuple[str | None, Path]:
    """(current version or None, its SentenceTransformer folder); the base encoder when no version is current."""
    row = registry.current_row(session, check_task(task))
    if row is not None and store.is_published(settings, row.path):
        return row.version, registry.model_folder(settings, row)
    return None, base_model_path(settings.base_model_path)


def serving_path(session: Session, settings: Settings, task: str = "sentiment") -> str:
    """The inference path that serves the current `task` version (recsys: the catalog encoder) on this machine, read
    from the choice a serving process made at load (no model is loaded here); '' while no classifier version is
    current or no process has loaded it yet."""
    if check_task(task) == Task.RECSYS:
        folder = encoder_path(session, settings, task)[1]
    else:
        row = registry.current_row(session, task)
        if row is None:
            return ""
        folder = store.cache_folder(settings, row.path)  # the folder the serving processes here load from
    if settings.finetune.inference_path == "torch":
        if task == Task.RECSYS:
            return "torch-float32"
        dtype = inference_dtype(settings.finetune.inference_precision, torch.device(resolve_device(settings.device)))
        return "torch-bfloat16" if dtype is not None else "torch-float32"
    selection = read_selection(cache_dir(settings.home, folder))
    return selection.chosen if selection is not None else ""


def catalog_encoder(settings: Settings, folder: Path) -> Any:
    """The encoder that embeds catalog items (`encode(texts, batch_size=..., normalize_embeddings=...)`), on the
    fastest path that keeps float32's nearest neighbours on this machine. Raises Unavailable."""
    from finetune.serving import load_catalog_encoder

    return load_catalog_encoder(folder, settings.home, device=settings.device,
                                choice=settings.finetune.inference_path)


def load_classifier(session: Session, settings: Settings, version: str | None = None,
                    task: str = "sentiment") -> TextClassifier:
    """The classifier of `version`, or of the current version, of `task`, on the inference path chosen for this
    machine (`finetune.inference_path`). Raises NotFound / Unavailable."""
    if version:
        row = registry.get_row(session, task, version)
    else:
        row = registry.current_row(session, task)
        if row is None:
            raise NotFound(f"no {task} model is in service yet: run `newsdesk finetune {task}`")
    return load_served(settings, registry.model_folder(settings, row), row.version)


def classify_texts(settings: Settings, texts: Sequence[str], *, version: str | None = None,
                   batch_size: int = 64, task: str = "sentiment") -> list[Prediction]:
    """Label texts with the current (or a given) version of `task` (sentiment or topic), in input order.

    Raises:
        InvalidInput: not a classifier task.  NotFound: no such version or none in service.
    """
    if check_task(task) == "recsys":
        raise InvalidInput("classify labels text by sentiment or topic", {"field": "task"})
    with session_scope(settings.database_url) as session:
        classifier = load_classifier(session, settings, version, task)
    return classifier.predict(texts, batch_size=batch_size, task=task)


def evaluate_version(settings: Settings, task: str, data_file: str | Path, *, version: str | None = None
                     ) -> dict[str, Any]:
    """Accuracy, macro-F1, weighted F1, per-class scores and confusion matrix of a sentiment or topic version on
    a labelled file.

    Raises:
        InvalidInput: recsys, a bad row or a label the model does not know (naming file and line).
    """
    from finetune.data import read_labelled
    from finetune.evaluate import classification_report

    if check_task(task) == Task.RECSYS:
        raise InvalidInput("evaluate_version supports sentiment and topic; use `newsdesk eval recsys` for ranking")
    with session_scope(settings.database_url) as session:
        classifier = load_classifier(session, settings, version, task)
    labels = classifier.labels_of(task)
    rows = read_labelled([data_file], labels)
    preds = classifier.predict([r.text for r in rows], task=task)
    report = classification_report([r.label for r in rows], [p.label for p in preds], labels)
    return {"version": classifier.version, "task": task, "data": str(data_file), "path": classifier.path, **report}
