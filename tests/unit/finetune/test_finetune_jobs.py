from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select as sa_select

from finetune import jobs, registry, service
from finetune.tables import TrainingRun
from newsdesk.db import session_scope
from newsdesk.errors import Conflict
from newsdesk.settings import FinetuneSettings, Settings


def test_task_lock_allows_one_run_per_task(settings: Settings) -> None:
    with registry.task_lock(settings, "sentiment"):
        with pytest.raises(Conflict, match="already in progress"), registry.task_lock(settings, "sentiment"):
            pass
        with registry.task_lock(settings, "recsys"):  # other tasks are independent
            pass
        assert not registry.lock_is_free(settings, "sentiment")
    assert registry.lock_is_free(settings, "sentiment")


def test_retrain_refuses_while_locked(settings: Settings, db_url: str) -> None:
    with registry.task_lock(settings, "sentiment"), pytest.raises(Conflict):
        service.retrain(settings, "sentiment", train_files=["x.csv"])


def test_register_adds_persistent_jobs(settings: Settings, db_url: str) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    jobs.register(scheduler, settings, threading.Event())
    ids = {job.id for job in scheduler.get_jobs()}
    assert ids == {"finetune:sentiment:cron", "finetune:topic:cron", "finetune:recsys:cron", "finetune:queue"}


def test_stale_running_rows_become_interrupted(settings: Settings, db_url: str) -> None:
    with session_scope(db_url) as s:
        s.add(TrainingRun(task="sentiment", status="running", trigger="cli", requested_by=""))
    assert jobs.mark_stale_runs(settings) == 1
    with registry.task_lock(settings, "sentiment"):  # a live run holds the lock: its row is left alone
        with session_scope(db_url) as s:
            s.add(TrainingRun(task="sentiment", status="running", trigger="cli", requested_by=""))
        assert jobs.mark_stale_runs(settings) == 0


def test_scheduled_retrain_waits_for_enough_new_labels(settings: Settings, db_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings.replace(finetune=FinetuneSettings(min_new_labels=3))
    labels = settings.home / "labels" / "sentiment"
    labels.mkdir(parents=True)
    (labels / "a.csv").write_text("text,label\na,neutral\nb,positive\n")
    with session_scope(db_url) as s:
        s.add(TrainingRun(task="sentiment", status="succeeded", trigger="cli", requested_by="", data_rows=2))
    calls: list[list[Path]] = []
    monkeypatch.setattr("finetune.service.retrain",
                        lambda settings, task, train_files, **kw: calls.append(list(train_files))
                        or SimpleNamespace(version="v2", reason="promoted"))
    assert jobs.scheduled_retrain(settings, "sentiment").startswith("skipped: 0 new rows")
    (labels / "b.csv").write_text("text,label\nc,neutral\nd,negative\ne,neutral\n")
    jobs.scheduled_retrain(settings, "sentiment")
    assert calls == [[labels / "a.csv", labels / "b.csv"]]


def test_scheduled_retrain_keeps_the_last_versions_pretrain_files(settings: Settings, db_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune.tables import ModelVersion

    train, tweets = tmp_path / "pb.csv", tmp_path / "tweets.csv"
    train.write_text("text,label\na,neutral\nb,positive\n")
    tweets.write_text("text,label\nc,negative\nd,neutral\n")
    with session_scope(db_url) as s:
        s.add(ModelVersion(task="sentiment", version="v1", path="x", primary_metric="macro_f1",
                           data={"train": [{"path": str(train)}],
                                 "pretrain": [{"path": str(tweets)}, {"path": str(tmp_path / "gone.csv")}]}))
    calls: list[tuple[list[Path], list[Path]]] = []
    monkeypatch.setattr("finetune.service.retrain",
                        lambda settings, task, train_files, pretrain_files=(), **kw:
                        calls.append((list(train_files), list(pretrain_files)))
                        or SimpleNamespace(version="v2", reason="promoted"))
    jobs.scheduled_retrain(settings, "sentiment")
    assert calls == [([train], [tweets])]  # a pretrain file that no longer exists is skipped


def test_queued_run_without_data_fails_instead_of_looping(settings: Settings, db_url: str) -> None:
    with session_scope(db_url) as s:
        run_id = service.request_retrain(s, "sentiment", "bob")
    assert jobs.run_queued(settings)[0].startswith("failed: no sentiment training files")
    with session_scope(db_url) as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == "failed" and run.finished_at is not None


def test_jobs_persist_in_the_database_job_store(settings: Settings, db_url: str) -> None:
    from newsdesk.worker import build_scheduler

    scheduler = build_scheduler(settings)
    scheduler.start(paused=True)
    try:
        jobs.register(scheduler, settings, threading.Event())
    finally:
        scheduler.shutdown(wait=False)
    again = build_scheduler(settings)  # a restarted worker finds them in apscheduler_jobs
    again.start(paused=True)
    try:
        stored = {job.id: job for job in again.get_jobs()}
    finally:
        again.shutdown(wait=False)
    assert set(stored) == {"finetune:sentiment:cron", "finetune:topic:cron", "finetune:recsys:cron", "finetune:queue"}
    assert stored["finetune:sentiment:cron"].args[1] == "sentiment"


def test_a_joint_model_is_retrained_as_one_by_schedule_and_by_request(settings: Settings, db_url: str,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune.tables import ModelVersion

    pb, topic = tmp_path / "pb.csv", tmp_path / "topic.csv"
    pb.write_text("text,label\na,neutral\nb,positive\n")
    topic.write_text("text,label\nc,Earnings\nd,IPO\n")
    new_labels = settings.home / "labels" / "topic"
    new_labels.mkdir(parents=True)
    (new_labels / "more.csv").write_text("text,label\ne,Macro\n")
    joint = {"tasks": ["sentiment", "topic"], "data": {"sentiment": {"train": [{"path": str(pb)}]},
                                                       "topic": {"train": [{"path": str(topic)}]}}}
    with session_scope(db_url) as s:
        for task in ("sentiment", "topic"):
            s.add(ModelVersion(task=task, version="v1", path="x", primary_metric="macro_f1",
                               data={"train": [{"path": str(pb if task == "sentiment" else topic)}],
                                     "joint": joint}))
    calls: list[tuple[str, list[Path], list[Path]]] = []
    monkeypatch.setattr("finetune.service.retrain",
                        lambda settings, task, train_files, topic_train_files=(), **kw:
                        calls.append((task, list(train_files), list(topic_train_files)))
                        or SimpleNamespace(version="v2", reason="promoted"))
    assert jobs.scheduled_retrain(settings, "topic").startswith("skipped: topic is served by a joint model")
    jobs.scheduled_retrain(settings, "sentiment")
    assert calls == [("multitask", [pb], [topic, new_labels / "more.csv"])]
    with session_scope(db_url) as s:
        run_id = service.request_retrain(s, "topic", "bob")  # "retrain now" on the topic model
    jobs.run_queued(settings)
    assert calls[-1][0] == "multitask"
    with session_scope(db_url) as s:
        assert s.get(TrainingRun, run_id).task == "multitask"


_TRAINER = """
import sys, time
from pathlib import Path
from finetune import registry
from sqlalchemy import select as sa_select

from finetune.tables import TrainingRun
from newsdesk.db import session_scope
from newsdesk.settings import Settings

settings = Settings.load(env={}, home=Path(sys.argv[1]), secret_key="x", device="cpu")
with registry.task_lock(settings, "sentiment"):
    with session_scope(settings.database_url) as s:
        run = TrainingRun(task="sentiment", status="running", trigger="cli", requested_by="", output_dir=sys.argv[2])
        s.add(run)
    (Path(sys.argv[2]) / "trainer" / "checkpoint-40").mkdir(parents=True)
    print("training", flush=True)
    time.sleep(60)
"""


def test_resume_after_kill_9_continues_from_the_checkpoint(settings: Settings, db_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A training process killed with SIGKILL leaves its row "running"; `--resume` (no worker ran meanwhile) sees
    that the task lock is free, takes the run over and continues from its checkpoint folder."""
    import signal
    import subprocess
    import sys

    work = settings.runs_dir / "sentiment" / "run-killed"
    proc = subprocess.Popen([sys.executable, "-c", _TRAINER, str(settings.home), str(work)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[3])
    try:
        assert proc.stdout.readline().strip() == "training"
        with pytest.raises(Conflict, match=rf"process {proc.pid}"):
            service.retrain(settings, "sentiment", train_files=["x.csv"], resume=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_prepare(url, settings, files, parsed, *, work_dir, staged, resume, pretrain_files):
        seen.update(work_dir=work_dir, resume=resume)
        raise Stop

    monkeypatch.setattr(service, "prepare_classifier", fake_prepare)
    with pytest.raises(Stop):
        service.retrain(settings, "sentiment", train_files=["x.csv"], resume=True)
    assert seen == {"work_dir": work, "resume": True}
    with session_scope(db_url) as s:
        statuses = s.scalars(sa_select(TrainingRun.status).order_by(TrainingRun.id)).all()
    assert statuses == ["interrupted", "failed"]  # the killed run, and the resumed attempt stopped by Stop


def test_queued_run_trains_on_its_own_request(settings: Settings, db_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo queues its first model with its files and preset; the worker trains exactly that (no version yet)."""
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    for f in (train, dev):
        f.write_text("text,label\nup,positive\n")
    with session_scope(db_url) as s:
        run_id = service.request_retrain(s, "sentiment", "demo", train_files=[train], dev_file=dev,
                                         args={"preset": "demo"}, trigger="demo")
        assert s.get(TrainingRun, run_id).trigger == "demo"
    calls: list[dict] = []
    monkeypatch.setattr("finetune.service.retrain",
                        lambda settings, task, **kw: calls.append(kw) or SimpleNamespace(version="v1", reason="first"))
    assert jobs.run_queued(settings) == ["v1: first"]
    assert calls[0]["train_files"] == [train.resolve()] and calls[0]["dev_file"] == str(dev.resolve())
    assert calls[0]["args"] == {"preset": "demo"} and calls[0]["run_id"] == run_id and calls[0]["promote"] == "auto"


def test_request_retrain_checks_its_arguments_now(session) -> None:
    from newsdesk.errors import InvalidInput

    with pytest.raises(InvalidInput):
        service.request_retrain(session, "sentiment", "demo", args={"preset": "nope"})
